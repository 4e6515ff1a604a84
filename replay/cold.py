"""Reading a selection's stored inputs and archive records from hot and cold storage as one.

A tiered day is a set of Parquet files per table (``storage/tiering.py``),
sorted by ``opportunity_key``: a key lookup or a key range reads only the
row groups whose statistics can hold it, in place (ranges on S3).

``load`` decides per table and day through ``tiering_catalog``
(``storage/tiered_days.py``): a day whose partition was dropped is read
from its Parquet; Postgres is read for every day (``storage/hot_records.py``,
the same columns: ``mediation/tables.py``), since a dropped day's partition
can exist again (very late events written after tiering). Rows are merged
on the table's primary key, the cold copy first, so a day split across both
tiers is never counted twice and nothing written after tiering is missed.
While a day is being tiered, some of its tables may already be cold and
others still hot; the choice is per table. ``TieredDays`` is named here
too because the replay API takes it from here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mediation.rules.model import ArchiveRecord
from mediation.rules.replay import Selection
from mediation.tables import TIMESTAMPTZ, record_table
from storage import hot_records
from storage.cold import ColdStore
from storage.stored_records import StoredInputs, archive_of, inputs_from_rows
from storage.tier_job import partition_days
from storage.tiered_days import TieredDays
from storage.tiering import TieringError, read_manifest

__all__ = [
    "Loaded",
    "TieredDays",
    "cold_rows",
    "load",
    "opportunities_per_day",
    "table_rows",
]


def opportunities_per_day(
    conn: psycopg.Connection, store: ColdStore, selection: Selection
) -> dict[dt.date, int]:
    """About how many opportunities each day's part of a range holds, hot and cold.

    Exact for Postgres (an index-only count); for a tiered day, the rows of
    the Parquet row groups whose key statistics overlap the range (footers
    only). Sizes the chunks; days that hold nothing are left out.
    """
    tiered = TieredDays.between(conn, *selection.day_bounds())
    cold_days = {day for table, day in tiered.dropped if table == "opportunity_records"}
    stored = cold_days | set(partition_days(conn, "opportunity_records"))
    counts = {}
    # Only the days that hold something: a range may span centuries.
    for day, start, end in selection.day_spans(stored):
        cold = day in cold_days
        low, high = dataclasses.replace(selection, start_ms=start, end_ms=end).key_bounds()
        in_cold = _cold_rows_between(store, day, low, high) if cold else 0
        counts[day] = hot_records.count_opportunities(conn, day, low, high) + in_cold
    return counts


def _cold_rows_between(store: ColdStore, day: dt.date, low: str, high: str) -> int:
    """Rows of the day's opportunity row groups that can hold keys in ``[low, high)``."""
    manifest = read_manifest(store, "opportunity_records", day)
    if manifest is None:
        raise TieringError(f"opportunity_records {day}: catalogued as tiered, but no manifest")
    rows = 0
    for exported in manifest.files:
        metadata = pq.ParquetFile(store.arrow_source(exported.key)).metadata
        column = metadata.schema.names.index("opportunity_key")
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            stats = group.column(column).statistics
            if stats is None or not stats.has_min_max or (stats.max >= low and stats.min < high):
                rows += group.num_rows
    return rows


def _arrow_filter(table: str, selection: Selection) -> Any:
    key = pc.field("opportunity_key")
    if not selection.is_range:
        return key.isin(list(selection.keys))
    low, high = selection.key_bounds()
    condition = (key >= low) & (key < high)
    for name in ("app_id", "placement_id"):
        value = getattr(selection, name)
        if value is not None and name in record_table(table).read_columns:
            condition &= pc.field(name) == value
    return condition


def cold_rows(
    store: ColdStore, table: str, day: dt.date, selection: Selection
) -> list[dict[str, Any]]:
    """The rows of ``table`` on a tiered ``day`` that are in ``selection``."""
    manifest = read_manifest(store, table, day)
    if manifest is None:
        raise TieringError(f"{table} {day}: catalogued as tiered, but no manifest in {store.url}")
    where = _arrow_filter(table, selection)
    declared = record_table(table)
    columns, timestamps = declared.read_columns, declared.names_of_type(TIMESTAMPTZ)
    rows: list[dict[str, Any]] = []
    for exported in manifest.files:
        # Read in place: the footer, then only the row groups whose
        # opportunity_key statistics can hold the selection.
        found = pq.read_table(
            store.arrow_source(exported.key), columns=list(columns), filters=where
        )
        rows.extend(_epoch_ms(found, timestamps).to_pylist())
    return rows


def _epoch_ms(table: pa.Table, timestamps: frozenset[str]) -> pa.Table:
    """Timestamps as epoch milliseconds, as ``storage.hot_records`` reads them from Postgres."""
    for index, name in enumerate(table.column_names):
        if name in timestamps:
            column = table.column(index).cast(pa.timestamp("ms", tz="UTC"), safe=False)
            table = table.set_column(index, name, column.cast(pa.int64()))
    return table


def table_rows(
    conn: psycopg.Connection,
    store: ColdStore,
    tiered: TieredDays,
    table: str,
    selection: Selection,
) -> list[dict[str, Any]]:
    """The rows of ``table`` in ``selection``, from both tiers, each primary key once."""
    cold = [
        row
        for day in selection.days()
        if (table, day) in tiered.dropped
        for row in cold_rows(store, table, day, selection)
    ]
    warm = hot_records.table_rows(conn, table, selection)
    if not cold:
        return warm
    primary = record_table(table).row_key
    seen = {tuple(row[name] for name in primary) for row in cold}
    return cold + [row for row in warm if tuple(row[name] for name in primary) not in seen]


@dataclass(frozen=True)
class Loaded:
    inputs: dict[str, StoredInputs]
    archives: dict[str, ArchiveRecord]
    deleted_days: list[dt.date]


def load(conn: psycopg.Connection, store: ColdStore, selection: Selection) -> Loaded:
    """Every opportunity of ``selection`` with its events, and its archive record."""
    tiered = TieredDays.read(conn, selection.days())

    def rows(table: str) -> list[dict[str, Any]]:
        return table_rows(conn, store, tiered, table, selection)

    opportunities, archives = rows("opportunity_records"), rows("archive_records")
    deliveries, events = rows("delivery_records"), rows("event_records")
    if selection.placement_id is not None:
        # Deliveries and events carry no placement: keep those of the
        # selected opportunities.
        keys = {row["opportunity_key"] for row in opportunities}
        events = [row for row in events if row["opportunity_key"] in keys]
    return Loaded(
        inputs_from_rows(opportunities, deliveries, events),
        {row["opportunity_key"]: archive_of(row) for row in archives},
        tiered.deleted_days(selection),
    )
