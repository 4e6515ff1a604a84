"""``mediation migrate``: apply pending migrations, then create day partitions."""

from __future__ import annotations

import argparse
import datetime as dt

from mediation.cli.common import settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="list pending migrations only")


def run(args: argparse.Namespace) -> int:
    from storage.db import connect
    from storage.migrate import migrate, pending
    from storage.partitions import days_around, ensure_partitions

    database_url = settings().database_url
    if args.dry_run:
        todo = pending(database_url)
        print("pending migrations: " + (", ".join(m.version for m in todo) or "none"))
        return 0
    applied = migrate(database_url)
    print("applied: " + (", ".join(applied) or "none (up to date)"))
    with connect(database_url) as conn:
        created = ensure_partitions(conn, days_around(dt.datetime.now(dt.UTC).date(), 1, 7))
    print(f"day partitions created: {created}")
    return 0
