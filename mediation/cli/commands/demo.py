"""``mediation demo``: the whole pipeline on local defaults with a simulated SDK."""

from __future__ import annotations

import argparse

from mediation.cli.common import settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of traffic")
    parser.add_argument("--rate", type=float, default=50.0, help="sync requests per second")
    parser.add_argument("--closure-window-ms", type=int, default=10_000)
    parser.add_argument(
        "--keep-services", action="store_true", help="leave services the demo started running"
    )


def run(args: argparse.Namespace) -> int:
    from mediation.sim.demo import DemoOptions, run_demo

    return run_demo(
        settings(),
        DemoOptions(
            duration_s=args.duration,
            rate_rps=args.rate,
            closure_window_ms=args.closure_window_ms,
            keep_services=args.keep_services,
        ),
    )
