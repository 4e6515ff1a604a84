"""``mediation dev up|down|status``: the local services."""

from __future__ import annotations

import argparse

from mediation.cli.common import settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument(
        "--services",
        nargs="+",
        choices=["postgres", "redis", "kafka", "s3", "pooler"],
        help="what to start (default: postgres redis kafka s3; pooler = pgbouncer in "
        "transaction mode, for the tests)",
    )


def run(args: argparse.Namespace) -> int:
    from mediation.sim import devstack
    from mediation.text_table import render_table

    current = settings()
    if args.action == "up":
        services = tuple(args.services or devstack.DEFAULT_SERVICES)
        statuses = devstack.up(current, services)
    elif args.action == "down":
        statuses = devstack.down(current)
    else:
        statuses = devstack.status(current)
    print(
        render_table(
            f"dev stack ({args.action})",
            ["service", "address", "state", "detail"],
            [[s.name, s.address, s.state, s.detail] for s in statuses],
        )
    )
    return 0
