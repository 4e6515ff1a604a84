"""Reading opportunities' stored inputs and archive records back from hot Postgres.

Each table is read on its own (``table_rows``, for a ``Selection``: keys,
or a key range with app and placement filters), its ``read_columns``
(``mediation/tables.py``), and the rows are turned back into the rules'
records by ``storage/stored_records.py``, so that ``close_opportunity``
can recompute the closing record exactly as the worker computed it.
``replay/cold.py`` reads the same tables from Parquet, table by table, and
joins them the same way. The sink's amendment ledger reads through here
too (``load_inputs``, ``load_archives``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from mediation.rules.model import ArchiveRecord
from mediation.rules.replay import Selection
from mediation.tables import JSONB, TIMESTAMPTZ, record_table

from .stored_records import StoredInputs, archive_of, inputs_from_rows

__all__ = ["count_opportunities", "load_archives", "load_inputs", "table_rows"]


def _select(name: str, kind: str) -> sql.Composable:
    # Epoch milliseconds and JSON text, from either tier: what the records
    # are made of, and cheaper than datetimes and decoded jsonb.
    column = sql.Identifier(name)
    if kind == TIMESTAMPTZ:
        return sql.SQL("floor(extract(epoch FROM {0}) * 1000)::int8 AS {0}").format(column)
    if kind == JSONB:
        return sql.SQL("{0}::text AS {0}").format(column)
    return column


def table_rows(conn: psycopg.Connection, table: str, selection: Selection) -> list[dict[str, Any]]:
    """The rows of ``table`` in ``selection`` that Postgres holds (filters the table has)."""
    declared = record_table(table)
    columns = declared.read_columns
    if selection.is_range:
        low, high = selection.key_bounds()
        conditions: list[sql.Composable] = [
            sql.SQL("opportunity_key >= %s AND opportunity_key < %s")
        ]
        params: list[Any] = [low, high]
        for name in ("app_id", "placement_id"):
            value = getattr(selection, name)
            if value is not None and name in columns:
                conditions.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
                params.append(value)
    elif selection.keys:
        conditions, params = [sql.SQL("opportunity_key = ANY(%s)")], [list(selection.keys)]
    else:
        return []
    query = sql.SQL("SELECT {} FROM {} WHERE day = ANY(%s) AND {}").format(
        sql.SQL(", ").join(_select(name, declared.column(name).type) for name in columns),
        sql.Identifier(table),
        sql.SQL(" AND ").join(conditions),
    )
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(query, (selection.days(), *params)).fetchall()


def load_inputs(conn: psycopg.Connection, keys: Iterable[str]) -> dict[str, StoredInputs]:
    """Inputs of ``keys`` that Postgres holds (the sink's amendments; replay uses ``cold.load``)."""
    selection = Selection(keys=tuple(sorted(set(keys))))
    return inputs_from_rows(
        table_rows(conn, "opportunity_records", selection),
        table_rows(conn, "delivery_records", selection),
        table_rows(conn, "event_records", selection),
    )


def load_archives(conn: psycopg.Connection, keys: Iterable[str]) -> dict[str, ArchiveRecord]:
    selection = Selection(keys=tuple(sorted(set(keys))))
    return {
        row["opportunity_key"]: archive_of(row)
        for row in table_rows(conn, "archive_records", selection)
    }


def count_opportunities(
    conn: psycopg.Connection, day: dt.date, low: str, high: str, limit: int | None = None
) -> int:
    """How many opportunities Postgres holds on ``day`` with keys in ``[low, high)``.

    An index-only count: it sizes a range replay's chunks. With ``limit``, a
    probe that stops after ``limit`` entries however many the range holds
    (the replay API's admission check must never compete with the SDK routes).
    """
    if limit is None:
        row = conn.execute(
            "SELECT count(*) FROM opportunity_records WHERE day = %s "
            "AND opportunity_key >= %s AND opportunity_key < %s",
            (day, low, high),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM opportunity_records WHERE day = %s "
            "AND opportunity_key >= %s AND opportunity_key < %s LIMIT %s) AS probe",
            (day, low, high, limit),
        ).fetchone()
    return int(row[0]) if row else 0
