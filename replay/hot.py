"""Reading opportunities' stored inputs and archive records back from hot Postgres.

Each table is read on its own (``table_rows``, for a ``Selection``: keys,
or a key range with app and placement filters) and the rows are joined and
turned back into the rules' records here (``inputs_from_rows``, with
``replay/records.py``), so that ``close_opportunity`` can recompute the
closing record exactly as the worker computed it. ``replay/cold.py`` reads
the same tables from Parquet, table by table, and joins them the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from mediation.rules.closure import close_opportunity
from mediation.rules.model import ArchiveRecord, Event
from mediation.rules.replay import Selection

from .records import StoredInputs, archive_of, event_of, opportunity_of

__all__ = [
    "COLUMNS",
    "DELIVERY_COLUMNS",
    "JSON_COLUMNS",
    "TIMESTAMP_COLUMNS",
    "StoredInputs",
    "inputs_from_rows",
    "load_archives",
    "load_inputs",
    "recompute",
    "table_rows",
]

DELIVERY_COLUMNS = ("delivery_id", "status", "waterfall", "expires_at")
COLUMNS: dict[str, tuple[str, ...]] = {
    "opportunity_records": (
        "opportunity_key", "app_id", "placement_id", "device_hash", "ts", "client_ts",
        "config_version", "rollout_bucket", "context", "closure_window_ms", "grace_ms",
        "skew_tolerance_ms",
    ),
    "delivery_records": ("opportunity_key", *DELIVERY_COLUMNS),
    "event_records": (
        "opportunity_key", "event_id", "app_id", "type", "ts", "server_ts", "received_at",
        "source_id", "revenue_micros", "currency", "attrs", "late",
    ),
    "archive_records": (
        "opportunity_key", "app_id", "placement_id", "opened_at", "closed_at", "close_reason",
        "outcome", "rewarded", "credited_source_id", "revenue_micros", "currency", "counts",
        "counted_events", "excluded_events", "config_version", "rule_version", "inputs_hash",
    ),
}  # fmt: skip
# Read as epoch milliseconds and JSON text from either tier: what the
# records are made of, and cheaper than datetimes and decoded jsonb.
TIMESTAMP_COLUMNS = frozenset(
    {"ts", "client_ts", "expires_at", "server_ts", "received_at", "opened_at", "closed_at"}
)
JSON_COLUMNS = frozenset({"context", "waterfall", "attrs", "counts"})


def _select(name: str) -> sql.Composable:
    column = sql.Identifier(name)
    if name in TIMESTAMP_COLUMNS:
        return sql.SQL("floor(extract(epoch FROM {0}) * 1000)::int8 AS {0}").format(column)
    if name in JSON_COLUMNS:
        return sql.SQL("{0}::text AS {0}").format(column)
    return column


def table_rows(conn: psycopg.Connection, table: str, selection: Selection) -> list[dict[str, Any]]:
    """The rows of ``table`` in ``selection`` that Postgres holds (filters the table has)."""
    columns = COLUMNS[table]
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
        sql.SQL(", ").join(map(_select, columns)),
        sql.Identifier(table),
        sql.SQL(" AND ").join(conditions),
    )
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(query, (selection.days(), *params)).fetchall()


def inputs_from_rows(
    opportunities: Iterable[Mapping[str, Any]],
    deliveries: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
) -> dict[str, StoredInputs]:
    """Each opportunity (with its delivery) and its events, late ones apart, from rows of any tier.

    Events join their opportunity on (opportunity_key, app_id): an event of
    another app stored under the key (an orphan of its own app, written
    before the opportunity's archive) is never one of its inputs. An
    opportunity without its delivery row is left out, as the join in
    Postgres would.
    """
    delivery_of = {row["opportunity_key"]: row for row in deliveries}
    on_time: dict[tuple[str, str], list[Event]] = defaultdict(list)
    late: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for row in events:
        owner = (row["opportunity_key"], row["app_id"])
        (late if row["late"] else on_time)[owner].append(event_of(row))
    inputs = {}
    for row in opportunities:
        key = row["opportunity_key"]
        delivery = delivery_of.get(key)
        if delivery is None:
            continue
        joined = {**row, **{column: delivery[column] for column in DELIVERY_COLUMNS}}
        owner = (key, row["app_id"])
        inputs[key] = StoredInputs(
            opportunity_of(joined), tuple(on_time.get(owner, ())), tuple(late.get(owner, ()))
        )
    return inputs


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


def recompute(inputs: StoredInputs, include_late: bool = False) -> ArchiveRecord:
    """The closing record the rules give for the stored inputs."""
    events = inputs.events + (inputs.late_events if include_late else ())
    return close_opportunity(inputs.opportunity, events).archive
