"""``mediation tier``: hot days to Parquet, warm days to the cold class, old days deleted."""

from __future__ import annotations

import argparse
import datetime as dt

from mediation.cli.common import add_json_flag, print_json, settings
from mediation.cli.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hot-days",
        type=int,
        help="days kept in Postgres besides today (default 30; 0: every day before today "
        "is tiered)",
    )
    parser.add_argument(
        "--older-than",
        metavar="DAYS|DATE",
        help="tier the days before today - DAYS (like --hot-days DAYS), or strictly before "
        "DATE (YYYY-MM-DD, not after today), for every table",
    )
    parser.add_argument(
        "--warm-days",
        type=int,
        default=180,
        help="days before tiered objects move to the cold storage class (default 180)",
    )
    parser.add_argument(
        "--retain-days",
        type=int,
        default=365,
        help="days before tiered objects are deleted, with an audit record (default 365)",
    )
    parser.add_argument(
        "--cold-storage-class",
        help="S3 storage class of the cold tier (default: the setting "
        "MEDIATION_COLD_STORAGE_CLASS, STANDARD_IA unless set)",
    )
    parser.add_argument(
        "--hot-days-for",
        action="append",
        metavar="TABLE=DAYS",
        help="another hot retention for one table (repeatable)",
    )
    parser.add_argument("--table", action="append", help="only this table (repeatable)")
    parser.add_argument(
        "--today", type=dt.date.fromisoformat, help="the day to count from (default: today, UTC)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    add_json_flag(parser)


def _retention(args: argparse.Namespace, today: dt.date) -> tuple[int, dict[str, int]]:
    """The default hot days and the per-table ones, from the flags (checked)."""
    from mediation.rules.tiering import (
        DEFAULT_HOT_DAYS,
        check_retention,
        older_than_days,
        parse_hot_days,
    )
    from storage.partitions import PARTITIONED_TABLES

    if args.older_than is not None and (args.hot_days is not None or args.hot_days_for):
        raise UsageError("give --older-than or --hot-days/--hot-days-for, not both")
    try:
        if args.older_than is not None:  # one cut-off for every table
            default_hot_days, hot_days = older_than_days(args.older_than, today), {}
        else:
            default_hot_days = DEFAULT_HOT_DAYS if args.hot_days is None else args.hot_days
            hot_days = dict(parse_hot_days(args.hot_days_for or [], PARTITIONED_TABLES))
        for days in {default_hot_days, *hot_days.values()}:
            check_retention(days, args.warm_days, args.retain_days)
    except ValueError as exc:  # the rules' own words
        raise UsageError(str(exc)) from exc
    return default_hot_days, hot_days


def run(args: argparse.Namespace) -> int:
    from mediation.text_table import render_table
    from storage.cold import READABLE_STORAGE_CLASSES, cold_store_for
    from storage.db import connect
    from storage.lifecycle import age_tiered_days
    from storage.partitions import PARTITIONED_TABLES
    from storage.tier_job import arm_crash_drill, run_tiering

    current = settings()
    today = args.today or dt.datetime.now(dt.UTC).date()
    tables = args.table or list(PARTITIONED_TABLES)
    unknown = sorted(set(tables) - set(PARTITIONED_TABLES))
    if unknown:
        raise UsageError(f"unknown table(s) {', '.join(unknown)}")
    default_hot_days, hot_days = _retention(args, today)
    storage_class = args.cold_storage_class or current.cold_storage_class
    if storage_class not in READABLE_STORAGE_CLASSES:
        raise UsageError(
            f"--cold-storage-class must be one of {', '.join(sorted(READABLE_STORAGE_CLASSES))} "
            f"(replay reads cold days directly), got {storage_class!r}"
        )
    store = cold_store_for(current)
    arm_crash_drill(current.tier_crash_after)  # drills only (MEDIATION_TIER_CRASH_AFTER)
    with connect(current.database_url) as conn:
        results = run_tiering(
            conn,
            store,
            today,
            tables=tables,
            hot_days=hot_days,
            default_hot_days=default_hot_days,
            dry_run=args.dry_run,
        )
        results += age_tiered_days(
            conn,
            store,
            today,
            tables=tables,
            warm_days=args.warm_days,
            retain_days=args.retain_days,
            storage_class=storage_class,
            dry_run=args.dry_run,
        )
    failed = any(r.action.startswith("failed") for r in results)
    if args.json:
        print_json(
            {
                "cold_storage_url": store.url,
                "today": today,
                "hot_days": default_hot_days,
                "hot_days_for": hot_days,
                "warm_days": args.warm_days,
                "retain_days": args.retain_days,
                "storage_class": storage_class,
                "dry_run": args.dry_run,
                "days": [
                    {"table": r.table, "day": r.day, "rows": r.rows, "action": r.action}
                    for r in results
                ],
            }
        )
        return 1 if failed else 0
    title = (
        f"tiering to {store.url} (hot {default_hot_days}, warm {args.warm_days}, retain "
        f"{args.retain_days} days before {today}" + (", dry run)" if args.dry_run else ")")
    )
    if not results:
        print(f"{title}: nothing to tier")
        return 0
    print(
        render_table(
            title,
            ["table", "day", "rows", "action"],
            [[r.table, r.day.isoformat(), r.rows, r.action] for r in results],
        )
    )
    return 1 if failed else 0
