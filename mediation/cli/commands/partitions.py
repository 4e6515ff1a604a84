"""``mediation partitions``: create day partitions ahead (run daily)."""

from __future__ import annotations

import argparse
import datetime as dt

from mediation.cli.common import settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days-ahead", type=int, default=7)
    parser.add_argument("--days-back", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    from storage.db import connect
    from storage.partitions import days_around, ensure_partitions

    today = dt.datetime.now(dt.UTC).date()
    with connect(settings().database_url) as conn:
        created = ensure_partitions(conn, days_around(today, args.days_back, args.days_ahead))
    print(
        f"day partitions created: {created} "
        f"({today - dt.timedelta(days=args.days_back)} .. "
        f"{today + dt.timedelta(days=args.days_ahead)})"
    )
    return 0
