"""``mediation export impressions``: one row per counted impression, over hot and cold days.

The schema (docs/contracts.md, "Impression export") is ``COLUMNS``, in this
order in every format. Rows come day by day (the opportunity's day), each
day in (``server_ts``, ``opportunity_key``, ``event_id``) order, so the
output of the same range is byte for byte the same however its days are
tiered. Which impressions count: ``storage/impressions.py``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mediation.cli.common import day_range, settings
from mediation.cli.errors import UsageError

if TYPE_CHECKING:
    from storage.impressions import Impression

# (name, Parquet type, nullable): the export's stable schema.
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("day", "date32", False),
    ("server_ts", "timestamp[ms, UTC]", False),
    ("opportunity_key", "string", False),
    ("event_id", "string", False),
    ("app_id", "string", False),
    ("placement_id", "string", False),
    ("source_id", "string", True),
    ("country", "string", True),
    ("os", "string", True),
    ("revenue_micros", "int64", True),
    ("currency", "string", True),
    ("config_version", "int32", False),
    ("rollout_bucket", "int16", False),
)
NAMES = tuple(name for name, _kind, _nullable in COLUMNS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    impressions = actions.add_parser(
        "impressions",
        help="one row per counted impression of the opportunities of a range of days",
        description="One row per counted impression (revenue, source, country, os, config "
        "version, rollout bucket) of the opportunities of the days FROM to TO, hot and cold "
        "days alike; ordered by day, then server time, opportunity key, event id.",
    )
    impressions.add_argument(
        "--from", dest="first", required=True, help="first day, YYYY-MM-DD (UTC)"
    )
    impressions.add_argument(
        "--to", dest="last", required=True, help="last day, YYYY-MM-DD, inclusive"
    )
    impressions.add_argument("--app", help="only this app's impressions")
    impressions.add_argument("--format", choices=["csv", "jsonl", "parquet"], default="csv")
    impressions.add_argument(
        "--output", type=Path, help="write here (parquet: required; csv and jsonl: stdout)"
    )
    impressions.set_defaults(handler=run_impressions)


def _values(row: Impression) -> dict[str, Any]:
    return {
        "day": row.day,
        "server_ts": dt.datetime.fromtimestamp(row.server_ts_ms / 1000, dt.UTC),
        **{name: getattr(row, name) for name in NAMES[2:]},
    }


def _iso_ms(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _TextWriter:
    """CSV (header first, empty for null) or JSONL (keys in schema order, null)."""

    def __init__(self, stream: IO[str], kind: str):
        self.stream, self.kind = stream, kind
        self.csv = csv.writer(stream, lineterminator="\n") if kind == "csv" else None
        if self.csv is not None:
            self.csv.writerow(NAMES)

    def write(self, rows: list[Impression]) -> None:
        for row in rows:
            values = _values(row)
            values["day"] = values["day"].isoformat()
            values["server_ts"] = _iso_ms(values["server_ts"])
            if self.csv is not None:
                self.csv.writerow(["" if values[n] is None else values[n] for n in NAMES])
            else:
                self.stream.write(json.dumps(values, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.stream.flush()


class _ParquetWriter:
    def __init__(self, path: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {
            "date32": pa.date32(),
            "timestamp[ms, UTC]": pa.timestamp("ms", tz="UTC"),
            "string": pa.string(),
            "int64": pa.int64(),
            "int32": pa.int32(),
            "int16": pa.int16(),
        }
        self.pa = pa
        self.schema = pa.schema(
            [pa.field(name, types[kind], nullable) for name, kind, nullable in COLUMNS]
        )
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd")

    def write(self, rows: list[Impression]) -> None:
        if rows:
            self.writer.write_table(
                self.pa.Table.from_pylist([_values(row) for row in rows], schema=self.schema)
            )

    def close(self) -> None:
        self.writer.close()


def run_impressions(args: argparse.Namespace) -> int:
    from storage.cold import cold_store_for
    from storage.db import connect
    from storage.impressions import day_impressions, stored_days
    from storage.tiered_days import TieredDays

    first, last = day_range(args.first, args.last)
    if args.format == "parquet" and args.output is None:
        raise UsageError("--format parquet needs --output FILE")
    current = settings()
    store = cold_store_for(current)
    with connect(current.database_url, autocommit=True) as conn:
        tiered = TieredDays.between(conn, first, last)
        days = stored_days(conn, tiered, first, last)
        deleted = sorted({day for _table, day in tiered.deleted})
        if deleted:
            print(
                "export impressions: deleted by retention, not exported: "
                + ", ".join(day.isoformat() for day in deleted),
                file=sys.stderr,
            )
        writer: _TextWriter | _ParquetWriter
        text: IO[str] | None = None
        try:
            if args.format == "parquet":
                writer = _ParquetWriter(args.output)
            else:
                if args.output is not None:
                    text = args.output.open("w", encoding="utf-8", newline="")
                writer = _TextWriter(sys.stdout if text is None else text, args.format)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        total = 0
        try:
            for done, day in enumerate(days, 1):
                rows = day_impressions(conn, store, tiered, day, args.app)
                writer.write(rows)
                total += len(rows)
                if len(days) > 1:
                    print(f"export impressions: {day} ({done}/{len(days)} days, {total} rows)",
                          file=sys.stderr)  # fmt: skip
        finally:
            writer.close()
            if text is not None:
                text.close()
    where = f" to {args.output}" if args.output is not None else ""
    print(f"export impressions: {total} rows from {len(days)} day(s){where}", file=sys.stderr)
    return 0
