"""``mediation replay-jobs``: run the replay API's queued jobs."""

from __future__ import annotations

import argparse
import sys

from mediation.cli.common import settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="stop when the queue is empty")
    parser.add_argument("--poll-s", type=float, default=2.0, help="queue poll interval")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="replay each job across N processes (default 1; at most the CPUs available)",
    )


def run(args: argparse.Namespace) -> int:
    import signal

    from mediation.cli.commands.replay import replay_processes
    from replay.jobs import serve_jobs
    from replay.run import ReplaySources
    from storage.cold import cold_store_for

    jobs = replay_processes(args.jobs)

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    current = settings()
    store = cold_store_for(current)
    try:
        ran = serve_jobs(
            current.database_url,
            store,
            once=args.once,
            poll_s=args.poll_s,
            jobs=jobs,
            sources=ReplaySources.of(current),
        )
    except KeyboardInterrupt:  # SIGTERM or Ctrl-C: a clean stop
        return 0
    print(f"replay-jobs: {ran} job(s) run", file=sys.stderr)
    return 0
