"""What a run left in Postgres, read for the people checking it: the demo's
summary and reconciliation, the go/no-go gate and ``mediation status``.

Counts and small aggregates only, each one statement on the caller's
connection (pooler-safe: no session state, no prepared statements).
``since`` bounds a run by time, ``day_from`` lets Postgres skip the day
partitions before it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import psycopg

__all__ = [
    "active_client_backends",
    "archive_close_reasons",
    "archive_lags_ms",
    "archive_outcomes",
    "dead_letter_counts",
    "event_counts",
    "orphans_stored",
    "rolled_back_operations",
]


def event_counts(
    conn: psycopg.Connection, day_from: dt.date, since: dt.datetime
) -> tuple[int, int, int]:
    """``(stored, late, excluded)`` events received since ``since``."""
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE late), count(*) FILTER (WHERE excluded_reason "
        "IS NOT NULL) FROM event_records WHERE day >= %s AND received_at >= %s",
        (day_from, since),
    ).fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


def dead_letter_counts(
    conn: psycopg.Connection, day_from: dt.date, since: dt.datetime
) -> list[tuple[str, int]]:
    """Dead letters made since ``since``, by reason (in reason order)."""
    rows = conn.execute(
        "SELECT reason, count(*) FROM dead_letters WHERE day >= %s AND created_at >= %s "
        "GROUP BY reason ORDER BY reason",
        (day_from, since),
    ).fetchall()
    return [(str(reason), int(n)) for reason, n in rows]


def archive_outcomes(
    conn: psycopg.Connection, day_from: dt.date, since: dt.datetime
) -> list[tuple[str, int, int, int]]:
    """``(outcome, records, rewarded, revenue micros)`` of opportunities opened since ``since``."""
    rows = conn.execute(
        "SELECT outcome, count(*), count(*) FILTER (WHERE rewarded), sum(revenue_micros)::bigint "
        "FROM archive_records WHERE day >= %s AND opened_at >= %s GROUP BY outcome "
        "ORDER BY outcome",
        (day_from, since),
    ).fetchall()
    return [(str(o), int(n), int(r), int(rev or 0)) for o, n, r, rev in rows]


def archive_close_reasons(
    conn: psycopg.Connection, day_from: dt.date, since: dt.datetime
) -> list[tuple[str, int]]:
    """Archive records of opportunities opened since ``since``, by close reason."""
    rows = conn.execute(
        "SELECT close_reason, count(*) FROM archive_records WHERE day >= %s AND opened_at >= %s "
        "GROUP BY close_reason ORDER BY close_reason",
        (day_from, since),
    ).fetchall()
    return [(str(reason), int(n)) for reason, n in rows]


def archive_lags_ms(
    conn: psycopg.Connection, day_from: dt.date, since: dt.datetime
) -> list[tuple[float, float]]:
    """For each archive record since ``since``: ms from its close time, and from its request,
    to when it was written."""
    rows = conn.execute(
        "SELECT extract(epoch FROM archived_at - closed_at) * 1000, "
        "extract(epoch FROM archived_at - opened_at) * 1000 FROM archive_records "
        "WHERE day >= %s AND opened_at >= %s",
        (day_from, since),
    ).fetchall()
    return [(float(after_close), float(after_request)) for after_close, after_request in rows]


def orphans_stored(conn: psycopg.Connection, event_ids: Iterable[str]) -> int:
    """How many of ``event_ids`` are stored as orphans (``unknown_opportunity``)."""
    row = conn.execute(
        "SELECT count(*) FROM event_records WHERE event_id = ANY(%s) "
        "AND excluded_reason = 'unknown_opportunity'",
        (sorted(event_ids),),
    ).fetchone()
    return int(row[0]) if row else 0


def rolled_back_operations(conn: psycopg.Connection) -> tuple[int, dt.datetime | None]:
    """How many publish operations were rolled back here, and when the last one was."""
    row = conn.execute(
        "SELECT count(*), max(updated_at) FROM publish_operations WHERE state = 'rolled_back'"
    ).fetchone()
    return (int(row[0]), row[1]) if row else (0, None)


def active_client_backends(conn: psycopg.Connection) -> int:
    """Client backends running a statement now, this one left out (the database-load trigger)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    ).fetchone()
    return int(row[0]) if row else 0
