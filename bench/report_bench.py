"""The report over rollups: a 30-day range at the seed's volume, and one cold day.

Fills ``report_rollups`` in a fresh database as the pipeline leaves it at
the seed's volume (4.32M requests a day, docs/reporting.md "Rollups"):
``--days`` compacted days, each one row per group (``--apps`` x
``--placements`` x (``--sources`` + no source) x ``--countries`` x 2 os,
every group present: more than real traffic fills), and on the last day
also ``--fresh-rows`` rows not compacted yet (one per archive record: what
the sink adds between two compactions; 10 minutes at the seed's average
rate is 30,000). Postgres generates the rows, so the bench's own memory is
not in the figures.

Then, in this process, the report's own code (``storage/report_reads.py``
and ``mediation/report.py``, what ``mediation report`` runs minus
printing), median of ``--repeat`` runs:

- the whole range by day, by app and source, and by every dimension;
- one day tiered to Parquet (``--s3``: the local S3 server, else a
  scratch directory), compacted, by app and source;
- one day of ``--cold-delta-rows`` rows tiered without ever being
  compacted (the worst case: compaction never scheduled), by app and source;
- ``mediation rollups compact`` of the fresh rows and of that day.

The issue's target: the 30-day report in <= 2 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_store, fresh_database, machine, median
from mediation.report import report_rows
from mediation.settings import Settings
from mediation.text_table import render_table
from storage.partitions import ensure_partitions, partition_name
from storage.report_reads import range_sums
from storage.rollups import compact_day
from storage.tier_job import tier_day

LAST_DAY = dt.date(2026, 1, 30)

# One row per group of a day: the day's requests spread evenly over the groups.
_GROUPS = """
INSERT INTO {partition} (day, app_id, placement_id, source_id, country, os, currency,
    requests, fills, no_fills, load_failures, impressions, clicks, rewarded, revenue_micros)
SELECT %(day)s::date, 'app' || a, 'p' || p, CASE WHEN s = 0 THEN NULL ELSE 'net_' || s END,
       'C' || c, (ARRAY['ios', 'android'])[o], CASE WHEN s = 0 THEN NULL ELSE 'USD' END,
       %(per)s, CASE WHEN s = 0 THEN 0 ELSE %(per)s END,
       CASE WHEN s = 0 THEN %(per)s / 2 ELSE 0 END, %(per)s / 10,
       CASE WHEN s = 0 THEN 0 ELSE %(per)s * 9 / 10 END, %(per)s / 20, %(per)s / 30,
       CASE WHEN s = 0 THEN 0 ELSE %(per)s * 9000 END
FROM generate_series(1, %(apps)s) AS a, generate_series(1, %(placements)s) AS p,
     generate_series(0, %(sources)s) AS s, generate_series(1, %(countries)s) AS c,
     generate_series(1, 2) AS o
"""
# One row per archive record (what the sink adds before a compaction), groups spread by g.
_DELTAS = """
INSERT INTO {partition} (day, app_id, placement_id, source_id, country, os, currency,
    requests, fills, no_fills, load_failures, impressions, clicks, rewarded, revenue_micros)
SELECT %(day)s::date, 'app' || (1 + g %% %(apps)s), 'p' || (1 + g / 7 %% %(placements)s),
       CASE WHEN g %% 5 = 0 THEN NULL ELSE 'net_' || (1 + g / 11 %% %(sources)s) END,
       'C' || (1 + g / 13 %% %(countries)s), (ARRAY['ios', 'android'])[1 + g / 17 %% 2],
       CASE WHEN g %% 5 = 0 THEN NULL ELSE 'USD' END,
       1, (g %% 5 <> 0)::int, (g %% 5 = 0)::int, (g %% 9 = 0)::int, (g %% 5 <> 0)::int,
       (g %% 20 = 0)::int, (g %% 30 = 0)::int, CASE WHEN g %% 5 = 0 THEN 0 ELSE 9000 END
FROM generate_series(1, %(rows)s) AS g
"""


def _fill(conn: psycopg.Connection, sql_text: str, day: dt.date, params: dict[str, object]) -> None:
    partition = partition_name("report_rollups", day)
    conn.execute(sql_text.replace("{partition}", partition), {"day": day, **params})


def _timed(run: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests-per-day", type=int, default=4_320_000)
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--placements", type=int, default=3)
    parser.add_argument("--sources", type=int, default=6)
    parser.add_argument("--countries", type=int, default=20)
    parser.add_argument("--fresh-rows", type=int, default=30_000)
    parser.add_argument("--cold-delta-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--s3", action="store_true", help="tier to the local S3 server")
    args = parser.parse_args()
    groups = args.apps * args.placements * (args.sources + 1) * args.countries * 2
    per_group = max(1, args.requests_per_day // groups)
    days = [LAST_DAY - dt.timedelta(days=n) for n in range(args.days)][::-1]
    cold_day, worst_day = days[0] - dt.timedelta(days=1), days[0] - dt.timedelta(days=2)
    shape = {"apps": args.apps, "placements": args.placements, "sources": args.sources,
             "countries": args.countries}  # fmt: skip
    base = Settings.from_env()
    figures: dict[str, object] = {"groups_per_day": groups, "days": args.days}
    with fresh_database(base.database_url) as url, tempfile.TemporaryDirectory() as scratch:
        store = bench_store(args.s3, "report-bench", scratch, base.aws_endpoint_url)
        with psycopg.connect(url, autocommit=True) as conn:
            ensure_partitions(conn, [worst_day, cold_day, *days])
            started = time.monotonic()
            for day in [cold_day, *days]:
                _fill(conn, _GROUPS, day, {**shape, "per": per_group})
            _fill(conn, _DELTAS, days[-1], {**shape, "rows": args.fresh_rows})
            _fill(conn, _DELTAS, worst_day, {**shape, "rows": args.cold_delta_rows})
            conn.execute("VACUUM ANALYZE report_rollups")
            figures["fill_s"] = time.monotonic() - started
            rows = conn.execute(
                "SELECT count(*) FROM report_rollups WHERE day BETWEEN %s AND %s",
                (days[0], days[-1]),
            ).fetchone()
            figures["range_rollup_rows"] = rows[0] if rows else 0

            def report(first: dt.date, last: dt.date, by: tuple[str, ...]) -> int:
                read = range_sums(conn, store, first, last, by)
                return len(report_rows(read.parts))

            shapes: list[tuple[str, tuple[str, ...]]] = [
                ("by_day", ("day",)),
                ("by_app_source", ("app_id", "source_id")),
                ("by_everything", ("day", "app_id", "placement_id", "source_id", "country", "os")),
            ]
            for name, by in shapes:
                seconds, out = _timed(partial(report, days[0], days[-1], by), args.repeat)
                figures[f"report_{args.days}d_{name}_s"] = seconds
                figures[f"report_{args.days}d_{name}_rows"] = out

            tier_day(conn, store, "report_rollups", cold_day)
            seconds, _ = _timed(
                lambda: report(cold_day, cold_day, ("app_id", "source_id")), args.repeat
            )
            figures["cold_day_compacted_s"] = seconds
            tier_day(conn, store, "report_rollups", worst_day)
            seconds, _ = _timed(
                lambda: report(worst_day, worst_day, ("app_id", "source_id")), args.repeat
            )
            figures["cold_day_uncompacted_s"] = seconds
            figures["cold_day_uncompacted_rows"] = args.cold_delta_rows

            started = time.monotonic()
            before, after = compact_day(conn, days[-1])
            figures["compact_fresh_s"] = time.monotonic() - started
            figures["compact_fresh_rows"] = [before, after]
            seconds, _ = _timed(lambda: report(days[0], days[-1], ("day",)), args.repeat)
            figures[f"report_{args.days}d_by_day_after_compact_s"] = seconds
    figures["store"] = "s3" if args.s3 else "file"
    print(json.dumps({"bench": "report", "machine": machine(), **figures}))
    key = f"report_{args.days}d"
    lines = [
        (f"{args.days} days by day", f"{key}_by_day_s", figures[f"{key}_by_day_rows"]),
        (f"{args.days} days by app, source", f"{key}_by_app_source_s",
         figures[f"{key}_by_app_source_rows"]),
        (f"{args.days} days by every dimension", f"{key}_by_everything_s",
         figures[f"{key}_by_everything_rows"]),
        (f"{args.days} days by day, after compacting", f"{key}_by_day_after_compact_s", ""),
        ("one cold day (compacted), by app, source", "cold_day_compacted_s", ""),
        (f"one cold day ({args.cold_delta_rows:,} rows never compacted)",
         "cold_day_uncompacted_s", ""),
        (f"compact {args.fresh_rows:,} fresh rows", "compact_fresh_s", ""),
    ]  # fmt: skip
    print(
        render_table(
            f"report over {args.days} days of rollups ({figures['range_rollup_rows']:,} rows, "
            f"{groups:,} groups a day + {args.fresh_rows:,} fresh rows), median of {args.repeat}",
            ["measure", "seconds", "rows out"],
            [[label, f"{figures[name]:.3f}", out] for label, name, out in lines],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
