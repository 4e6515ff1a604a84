"""Reading opportunities' stored inputs and archive records back from cold storage.

A tiered day is a set of Parquet files per table (``storage/tiering.py``),
sorted by ``opportunity_key``: a lookup by key reads only the row groups
whose statistics can hold it. ``load`` decides per table and day, through
``tiering_catalog``, whether rows are in Postgres or in cold storage, so
callers see one store.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import psycopg
import pyarrow.parquet as pq

from mediation.rules.model import ArchiveRecord
from mediation.rules.ulid import ulid_day
from storage.cold import ColdStore
from storage.tiering import TieringError, read_manifest

from . import hot
from .records import StoredInputs, archive_of

__all__ = ["cold_rows", "load_archives", "load_inputs", "tiered_days"]


def cold_rows(
    store: ColdStore, table: str, day: dt.date, keys: Iterable[str]
) -> list[dict[str, Any]]:
    """The rows of ``table`` on a tiered ``day`` whose ``opportunity_key`` is in ``keys``."""
    manifest = read_manifest(store, table, day)
    if manifest is None:
        raise TieringError(f"{table} {day}: catalogued as tiered, but no manifest in {store.url}")
    wanted = sorted(set(keys))
    rows: list[dict[str, Any]] = []
    for exported in manifest.files:
        # Read in place (ranges, on S3): the footer, then only the row groups
        # whose opportunity_key statistics can hold the keys.
        found = pq.read_table(
            store.arrow_source(exported.key), filters=[("opportunity_key", "in", wanted)]
        )
        rows.extend(found.to_pylist())
    return rows


def tiered_days(conn: psycopg.Connection, tables: Iterable[str]) -> set[tuple[str, dt.date]]:
    """(table, day) pairs that were dropped from Postgres after tiering."""
    return {
        (str(table), day)
        for table, day in conn.execute(
            "SELECT table_name, day FROM tiering_catalog "
            "WHERE dropped_at IS NOT NULL AND table_name = ANY(%s)",
            (list(tables),),
        ).fetchall()
    }


def _rows(
    conn: psycopg.Connection,
    store: ColdStore,
    tiered: set[tuple[str, dt.date]],
    table: str,
    keys: Iterable[str],
) -> list[dict[str, Any]]:
    """The rows of ``table`` for ``keys``, each day from the tier that holds it now.

    Decided per table: while a day is being tiered, some of its tables may
    already be in cold storage and others still in Postgres.
    """
    hot_keys: list[str] = []
    cold_days: dict[dt.date, list[str]] = defaultdict(list)
    for key in sorted(set(keys)):
        day = ulid_day(key)
        if (table, day) in tiered:
            cold_days[day].append(key)
        else:
            hot_keys.append(key)
    rows = hot.table_rows(conn, table, hot_keys)
    for day, day_keys in cold_days.items():
        rows += cold_rows(store, table, day, day_keys)
    return rows


def load_inputs(
    conn: psycopg.Connection, store: ColdStore, keys: Iterable[str]
) -> dict[str, StoredInputs]:
    """Every opportunity of ``keys`` with its events, from whichever tier holds each table's day."""
    keys = sorted(set(keys))
    tables = ("opportunity_records", "delivery_records", "event_records")
    tiered = tiered_days(conn, tables)
    return hot.inputs_from_rows(*(_rows(conn, store, tiered, table, keys) for table in tables))


def load_archives(
    conn: psycopg.Connection, store: ColdStore, keys: Iterable[str]
) -> dict[str, ArchiveRecord]:
    """The archive record of each of ``keys``, from whichever tier holds its day."""
    tiered = tiered_days(conn, ["archive_records"])
    return {
        row["opportunity_key"]: archive_of(row)
        for row in _rows(conn, store, tiered, "archive_records", keys)
    }
