"""``mediation publish-worker``: drive publish operations (config-publish-worker)."""

from __future__ import annotations

import argparse
import signal
import threading

from mediation.cli.common import settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between passes")


def run(args: argparse.Namespace) -> int:
    from mediation.ops.publish_worker import RedisCohorts, crash_drill, serve

    current = settings()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    cohorts = RedisCohorts(current.redis_url, current.topic_prefix)
    try:
        drill = crash_drill(current.publish_crash_after)
        serve(current.database_url, cohorts, args.interval, stop, on_step=drill)
    finally:
        cohorts.close()
    return 0
