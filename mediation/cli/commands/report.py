"""``mediation report``: requests, fills, impressions, revenue and eCPM of a range of days.

Reads the daily rollups (``storage/report_reads.py``: hot and cold days as
one); what each figure means is ``mediation/report.py`` and
docs/reporting.md, "The report". Formats: a text table with totals
(default), CSV, JSON (``--json`` is ``--format json``) and Parquet, with
the same fields; ``--chart FILE.png`` draws revenue and fill rate per day.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from mediation.cli.common import day_range, print_json, settings
from mediation.cli.errors import UsageError
from mediation.report import DIMENSIONS, FIELDS, ReportRow, parse_dimensions, report_rows
from mediation.text_table import render_table

if TYPE_CHECKING:
    from storage.report_reads import RangeSums

_FORMATS = ("table", "csv", "json", "parquet")
_NAMES = {column: name for name, column in DIMENSIONS.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="first", required=True, help="first day, YYYY-MM-DD (UTC)")
    parser.add_argument("--to", dest="last", required=True, help="last day, YYYY-MM-DD, inclusive")
    parser.add_argument(
        "--by",
        default="day",
        help=f"group by these, comma-separated, in this order: {','.join(DIMENSIONS)} "
        "(default: day; an empty value: one total)",
    )
    parser.add_argument(
        "--app", action="append", help="only this app (repeat, or comma-separate, for several)"
    )
    parser.add_argument("--format", choices=_FORMATS, default="table")
    parser.add_argument("--json", action="store_true", help="the same as --format json")
    parser.add_argument(
        "--output", type=Path, help="write here (parquet: required; the others: stdout without it)"
    )
    parser.add_argument(
        "--chart",
        type=Path,
        metavar="FILE.png",
        help="also draw revenue per day by source, and fill rate per day (the 'reports' extra)",
    )


def _apps(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    return sorted({app.strip() for value in values for app in value.split(",") if app.strip()})


def _progress(day: dt.date, done: int, of: int) -> None:
    if of > 1:
        print(f"report: read cold day {day} ({done}/{of})", file=sys.stderr)


def _percent(value: object) -> str:
    return "-" if value is None else f"{float(value) * 100:.1f}%"  # type: ignore[arg-type]


def _units(micros: object) -> str:
    return "-" if micros is None else f"{int(micros) / 1_000_000:,.4f}"  # type: ignore[call-overload]


def _table(by: tuple[str, ...], rows: list[ReportRow], totals: list[ReportRow], title: str) -> str:
    headers = [*(_NAMES[column] for column in by), "currency", "requests", "fills", "fill",
               "no-fill", "load fails", "impressions", "clicks", "CTR", "rewarded", "revenue",
               "eCPM"]  # fmt: skip

    def cells(dimensions: Sequence[object], row: ReportRow) -> list[object]:
        values = dict(zip(FIELDS, row.values(), strict=True))
        return [
            *("-" if value is None else str(value) for value in dimensions),
            values["currency"] or "-",
            values["requests"],
            values["fills"],
            _percent(values["fill_rate"]),
            _percent(values["no_fill_share"]),
            values["load_failures"],
            values["impressions"],
            values["clicks"],
            _percent(values["click_through_rate"]),
            values["rewarded"],
            _units(values["revenue_micros"]),
            _units(values["ecpm_micros"]),
        ]

    body = [cells(row.dimensions, row) for row in rows]
    if by and len(rows) > 1:
        body += [cells(["total", *[""] * (len(by) - 1)], row) for row in totals]
    return render_table(title, headers, body)


def _csv(stream: IO[str], by: tuple[str, ...], rows: list[ReportRow]) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow((*by, *FIELDS))
    for row in rows:
        values = (*row.dimensions, *row.values())
        writer.writerow(["" if value is None else str(value) for value in values])


def _parquet(path: Path, by: tuple[str, ...], rows: list[ReportRow]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ratios = {"fill_rate", "no_fill_share", "click_through_rate"}
    fields = [pa.field(name, pa.date32() if name == "day" else pa.string()) for name in by]
    fields += [
        pa.field(
            name,
            pa.string() if name == "currency" else pa.float64() if name in ratios else pa.int64(),
        )
        for name in FIELDS
    ]
    schema = pa.schema(fields)
    table = pa.Table.from_pylist([row.as_dict(by) for row in rows], schema=schema)
    pq.write_table(table, path, compression="zstd")


def _notes(read: RangeSums) -> list[str]:
    notes = []
    if read.unrolled_hot:
        first, last = read.unrolled_hot[0], read.unrolled_hot[-1]
        notes.append(
            f"report: {len(read.unrolled_hot)} day(s) have archive records but no rollups "
            f"(archived before rollups existed?): run 'mediation rollups rebuild --from {first} "
            f"--to {last}'"
        )
    if read.unrolled_cold:
        days = ", ".join(day.isoformat() for day in read.unrolled_cold)
        notes.append(f"report: tiered before rollups existed, not in the report: {days}")
    if read.deleted:
        days = ", ".join(day.isoformat() for day in read.deleted)
        notes.append(f"report: deleted by retention, not in the report: {days}")
    return notes


def run(args: argparse.Namespace) -> int:
    from storage.cold import cold_store_for
    from storage.db import connect
    from storage.report_reads import range_sums

    first, last = day_range(args.first, args.last)
    kind = "json" if args.json else args.format
    if args.json and args.format not in ("table", "json"):
        raise UsageError(f"--json and --format {args.format} say different things")
    if kind == "parquet" and args.output is None:
        raise UsageError("--format parquet needs --output FILE")
    by = parse_dimensions(args.by)
    apps = _apps(args.app)
    chart = None
    if args.chart is not None:
        from mediation.ops.report_chart import draw  # the 'reports' extra, checked first

        chart = draw
    current = settings()
    store = cold_store_for(current)
    with connect(current.database_url, autocommit=True) as conn:
        read = range_sums(conn, store, first, last, by, apps, _progress)
        by_source = (
            range_sums(conn, store, first, last, ("day", "source_id"), apps)
            if chart is not None
            else None
        )
    rows = report_rows(read.parts)
    totals = report_rows(((), currency, values) for _dims, currency, values in read.parts)
    for note in _notes(read):
        print(note, file=sys.stderr)
    names = tuple(_NAMES[column] for column in by)
    if kind == "parquet":
        _parquet(args.output, by, rows)
    else:
        text: IO[str] | None = None
        try:
            if args.output is not None:
                text = args.output.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        stream = sys.stdout if text is None else text
        try:
            if kind == "csv":
                _csv(stream, by, rows)
            elif kind == "json":
                document = {
                    "from": first,
                    "to": last,
                    "by": list(by),
                    "apps": apps,
                    "rows": [row.as_dict(by) for row in rows],
                    "totals": [row.as_dict(()) for row in totals],
                    "hot_days": read.hot_days,
                    "cold_days": read.cold_days,
                    "days_without_rollups": sorted(read.unrolled_hot + read.unrolled_cold),
                    "deleted_days": read.deleted,
                }
                print_json(document, text)
            else:
                title = (
                    f"report {first} .. {last} by {', '.join(names) or 'nothing (totals)'}"
                    f"{' for ' + ', '.join(apps) if apps else ''}: "
                    f"{read.hot_days} hot day(s), {len(read.cold_days)} cold"
                )
                stream.write(_table(by, rows, totals, title) + "\n")
        finally:
            if text is not None:
                text.close()
    if chart is not None and by_source is not None:
        chart(args.chart, first, last, by_source.parts)
        print(f"report: chart written to {args.chart}", file=sys.stderr)
    return 0
