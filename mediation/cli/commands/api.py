"""``mediation api``: the sync API (mediation-api); ``--role all`` adds event ingest.

``serve`` and ``add_serve_arguments`` are shared with ``mediation ingest``.
The HTTP server is ``--server``: uvicorn (the default) or Granian. Both
serve the same app with the same access log, metrics, request-head bounds
and graceful shutdown (lifespan: the producer is flushed); the differences
are in docs/operations.md. ``bench/gateway_bench.py`` measures both in one
run.
"""

from __future__ import annotations

import argparse
import os

from mediation.cli.common import settings

SERVERS = ("uvicorn", "granian")
# uvicorn stays the default: Granian was not measured clearly faster here
# (docs/benchmarks.md), it cannot cut in-flight requests short at shutdown
# and it ignores X-Forwarded-For (docs/operations.md).
DEFAULT_SERVER = "uvicorn"
# uvicorn: in-flight requests get this long after SIGTERM, then are
# cancelled; then the app's shutdown (producer flush) runs.
GRACEFUL_SHUTDOWN_S = 10
# Granian waits for in-flight requests as long as they take, then runs the
# app's shutdown: a worker still busy after both uvicorn's bounds (drain,
# then the producer's 10 s flush) is killed. Nothing answered 200 is lost
# by that: a 200 is sent only once the broker confirmed.
GRANIAN_KILL_AFTER_S = GRACEFUL_SHUTDOWN_S + 10


def add_serve_arguments(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument(
        "--processes", type=int, default=1, help="server worker processes (about one per core)"
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=DEFAULT_SERVER,
        help=f"HTTP server (default {DEFAULT_SERVER}; the differences: docs/operations.md)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_serve_arguments(parser, 8080)
    parser.add_argument(
        "--role",
        choices=["api", "all"],
        default="all",
        help="api: requests + config only; all: also /v1/events",
    )


def serve(args: argparse.Namespace, roles: str) -> int:
    settings()  # fail fast, with one clear line, before the server starts workers
    # The gateway processes the server starts read their role from the environment.
    os.environ["MEDIATION_GATEWAY_ROLES"] = roles
    if args.server == "uvicorn":
        _serve_uvicorn(args)
    else:
        _serve_granian(args)
    return 0


def _serve_uvicorn(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(
        "gateway.asgi:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.processes,
        loop="uvloop",
        # httptools, with the request line and headers bounded (431/414).
        http="gateway.server_protocol:LimitedHttpToolsProtocol",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        lifespan="on",
    )


def _serve_granian(args: argparse.Namespace) -> None:
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    from gateway.granian_head import HTTP1_BUFFER_BYTES

    Server(
        # The app with the request head bounded (414/431 in the error shape).
        "gateway.asgi:bounded_app_from_env",
        factory=True,
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.processes,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(max_buffer_size=HTTP1_BUFFER_BYTES),
        log_level=LogLevels.warning,
        log_access=False,
        workers_kill_timeout=GRANIAN_KILL_AFTER_S,
        # As uvicorn's supervisor does with several processes: a worker that
        # dies is replaced (one process alone exits, for the process manager).
        respawn_failed_workers=args.processes > 1,
    ).serve()


def run(args: argparse.Namespace) -> int:
    return serve(args, args.role)
