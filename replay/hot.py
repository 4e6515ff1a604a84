"""Reading opportunities' stored inputs and archive records back from hot Postgres.

Rows are turned back into the rules' records (``replay/records.py``) so
that ``close_opportunity`` can recompute the closing record, exactly as the
worker computed it; ``replay/cold.py`` does the same from Parquet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

from mediation.rules.closure import close_opportunity
from mediation.rules.model import ArchiveRecord, Event
from mediation.rules.ulid import ulid_day

from .records import StoredInputs, archive_of, event_of, opportunity_of

__all__ = [
    "StoredInputs",
    "event_rows",
    "inputs_from_rows",
    "load_archives",
    "load_inputs",
    "opportunity_rows",
    "recompute",
]


_OPP_SQL = """
SELECT o.opportunity_key, o.app_id, o.placement_id, o.device_hash, o.ts, o.client_ts,
       o.config_version, o.rollout_bucket, o.context, o.closure_window_ms, o.grace_ms,
       o.skew_tolerance_ms, d.delivery_id, d.status, d.waterfall, d.expires_at
FROM opportunity_records o
JOIN delivery_records d ON d.day = o.day AND d.opportunity_key = o.opportunity_key
WHERE o.day = ANY(%s) AND o.opportunity_key = ANY(%s)
"""
_EVENTS_SQL = """
SELECT opportunity_key, event_id, app_id, type, ts, server_ts, received_at, source_id,
       revenue_micros, currency, attrs, late
FROM event_records
WHERE day = ANY(%s) AND opportunity_key = ANY(%s)
"""
_ARCHIVE_SQL = """
SELECT opportunity_key, app_id, placement_id, opened_at, closed_at, close_reason, outcome,
       rewarded, credited_source_id, revenue_micros, currency, counts, counted_events,
       excluded_events, config_version, rule_version, inputs_hash
FROM archive_records WHERE day = ANY(%s) AND opportunity_key = ANY(%s)
"""


def _rows(conn: psycopg.Connection, query: str, keys: list[str]) -> list[dict[str, Any]]:
    days = sorted({ulid_day(key) for key in keys})
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(query, (days, keys)).fetchall()


def inputs_from_rows(
    opportunities: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]]
) -> dict[str, StoredInputs]:
    """Each opportunity with its events (late ones apart), from stored rows of any tier."""
    on_time: dict[str, list[Event]] = defaultdict(list)
    late: dict[str, list[Event]] = defaultdict(list)
    for row in events:
        (late if row["late"] else on_time)[row["opportunity_key"]].append(event_of(row))
    return {
        row["opportunity_key"]: StoredInputs(
            opportunity_of(row),
            tuple(on_time.get(row["opportunity_key"], ())),
            tuple(late.get(row["opportunity_key"], ())),
        )
        for row in opportunities
    }


def opportunity_rows(conn: psycopg.Connection, keys: list[str]) -> list[dict[str, Any]]:
    """``opportunity_records`` rows of ``keys``, each with its delivery's columns."""
    return _rows(conn, _OPP_SQL, keys)


def event_rows(conn: psycopg.Connection, keys: list[str]) -> list[dict[str, Any]]:
    return _rows(conn, _EVENTS_SQL, keys)


def load_inputs(conn: psycopg.Connection, keys: Iterable[str]) -> dict[str, StoredInputs]:
    keys = sorted(set(keys))
    return inputs_from_rows(opportunity_rows(conn, keys), event_rows(conn, keys))


def load_archives(conn: psycopg.Connection, keys: Iterable[str]) -> dict[str, ArchiveRecord]:
    keys = sorted(set(keys))
    return {row["opportunity_key"]: archive_of(row) for row in _rows(conn, _ARCHIVE_SQL, keys)}


def recompute(inputs: StoredInputs, include_late: bool = False) -> ArchiveRecord:
    """The closing record the rules give for the stored inputs."""
    events = inputs.events + (inputs.late_events if include_late else ())
    return close_opportunity(inputs.opportunity, events).archive
