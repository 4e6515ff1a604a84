"""``mediation api``: the sync API (mediation-api); ``--role all`` adds event ingest.

``serve`` and ``add_serve_arguments`` are shared with ``mediation ingest``.
"""

from __future__ import annotations

import argparse
import os

from mediation.cli.common import settings


def add_serve_arguments(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument(
        "--processes", type=int, default=1, help="uvicorn worker processes (about one per core)"
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
    import uvicorn

    settings()  # fail fast, with one clear line, before uvicorn starts workers
    # The gateway processes uvicorn starts read their role from the environment.
    os.environ["MEDIATION_GATEWAY_ROLES"] = roles
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
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    return 0


def run(args: argparse.Namespace) -> int:
    return serve(args, args.role)
