"""``mediation rollups compact|rebuild``: upkeep of the daily report rollups.

``compact`` folds each day's rollup rows into one per group: the sink adds
rows batch by batch, and a report reads fewer rows after it (schedule it,
e.g. every 10 minutes; it is safe beside running workers and itself).
``rebuild`` recomputes hot days' rollups from their archive records (days
archived before rollups existed, or a repair). ``storage/rollups.py`` says
how both stay exact.
"""

from __future__ import annotations

import argparse
import datetime as dt

from mediation.cli.common import add_json_flag, day_range, print_json, settings
from mediation.text_table import render_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    compact = actions.add_parser(
        "compact",
        help="fold each day's rollup rows into one per group (schedule it)",
        description="Fold each hot day's rollup rows into one row per group. Every hot day "
        "unless --from/--to say which.",
    )
    compact.add_argument("--from", dest="first", help="first day, YYYY-MM-DD (UTC)")
    compact.add_argument("--to", dest="last", help="last day, YYYY-MM-DD, inclusive")
    add_json_flag(compact)
    compact.set_defaults(handler=run_compact)
    rebuild = actions.add_parser(
        "rebuild",
        help="recompute hot days' rollups from their archive records",
        description="Recompute the rollups of the hot days FROM..TO from their archive "
        "records (days archived before rollups existed, or a repair).",
    )
    rebuild.add_argument("--from", dest="first", required=True, help="first day, YYYY-MM-DD")
    rebuild.add_argument("--to", dest="last", required=True, help="last day, inclusive")
    add_json_flag(rebuild)
    rebuild.set_defaults(handler=run_rebuild)


def _hot_days(table: str, first: str | None, last: str | None) -> list[dt.date]:
    from storage.db import connect
    from storage.tier_job import partition_days

    low, high = day_range(first or "0001-01-01", last or "9999-12-31")
    with connect(settings().database_url, autocommit=True) as conn:
        return [day for day in partition_days(conn, table) if low <= day <= high]


def run_compact(args: argparse.Namespace) -> int:
    from storage.db import connect
    from storage.rollups import compact_day

    done = []
    days = _hot_days("report_rollups", args.first, args.last)
    with connect(settings().database_url, autocommit=True) as conn:
        for day in days:
            before, after = compact_day(conn, day)
            done.append({"day": day, "rows_before": before, "rows_after": after})
    if args.json:
        print_json({"days": done})
    else:
        rows = [[d["day"], d["rows_before"], d["rows_after"]] for d in done if d["rows_before"]]
        print(render_table("rollups compacted", ["day", "rows before", "rows after"], rows))
    return 0


def run_rebuild(args: argparse.Namespace) -> int:
    from storage.db import connect
    from storage.rollups import rebuild_day

    done = []
    days = _hot_days("archive_records", args.first, args.last)
    with connect(settings().database_url, autocommit=True) as conn:
        for day in days:
            done.append({"day": day, "rows": rebuild_day(conn, day)})
    if args.json:
        print_json({"days": done})
    else:
        rows = [[d["day"], d["rows"]] for d in done]
        print(render_table("rollups rebuilt from archive records", ["day", "rollup rows"], rows))
    return 0
