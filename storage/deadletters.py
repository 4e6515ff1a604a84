"""Listing and re-driving dead letters from the ``dead_letters`` table.

Re-drive sends a dead letter's original bytes back to the topic it came
from (the same key, so the same dedup applies downstream) and marks it
``redriven`` in the same step, so running it twice sends nothing twice.
Only letters with a source position can be re-driven this way: decode
failures and the worker's rule refusals (``duplicate_conflict``,
``opportunity_app_mismatch``, ``too_many_events``, ``too_many_orphans``),
which carry the bytes that arrived (re-send those only once their cause is
gone, or the rules refuse them again). Letters without one (``unwritable``,
refusals by the sink, letters from before rule refusals had positions) are
listed but skipped.

Discarding marks pending letters ``discarded`` (their cause is known and
they are not to be sent again): re-drive passes them by, like re-driven ones.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .db import connect

__all__ = ["DeadLetterRow", "discard", "get_dead_letter", "list_dead_letters", "redrive"]


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    day: dt.date
    id: str
    reason: str
    detail: str
    app_id: str | None
    opportunity_key: str | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    redrive_status: str
    created_at: dt.datetime
    payload: bytes


_COLUMNS = (
    "day, id, reason, detail, app_id, opportunity_key, source_topic, "
    "source_partition, source_offset, redrive_status, created_at, payload"
)


def _where(
    reason: str | None,
    app_id: str | None,
    since: dt.datetime | None,
    status: str | None,
    ids: Sequence[str] = (),
) -> tuple[str, list[object]]:
    clauses: list[str] = ["true"]
    params: list[object] = []
    if ids:
        clauses.append("id = ANY(%s)")
        params.append(list(ids))
    if reason:
        clauses.append("reason = %s")
        params.append(reason)
    if app_id:
        clauses.append("app_id = %s")
        params.append(app_id)
    if since:
        clauses.append("created_at >= %s AND day >= %s")
        params += [since, since.date() - dt.timedelta(days=1)]
    if status:
        clauses.append("redrive_status = %s")
        params.append(status)
    return " AND ".join(clauses), params


def list_dead_letters(
    database_url: str,
    *,
    reason: str | None = None,
    app_id: str | None = None,
    since: dt.datetime | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[DeadLetterRow]:
    where, params = _where(reason, app_id, since, status)
    with connect(database_url) as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM dead_letters WHERE {where} ORDER BY created_at DESC LIMIT %s",
            [*params, limit],
        ).fetchall()
    return [DeadLetterRow(*row) for row in rows]


def get_dead_letter(database_url: str, letter_id: str) -> DeadLetterRow | None:
    """The dead letter ``letter_id`` (ids are unique across days), or None."""
    with connect(database_url) as conn:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM dead_letters WHERE id = %s ORDER BY day DESC LIMIT 1",
            (letter_id,),
        ).fetchone()
    return DeadLetterRow(*row) if row else None


def discard(
    database_url: str,
    *,
    reason: str | None = None,
    app_id: str | None = None,
    since: dt.datetime | None = None,
    ids: Sequence[str] = (),
    dry_run: bool = True,
) -> int:
    """Mark the pending letters that match ``discarded``; return how many (would be) marked.

    Letters already re-driven or discarded are left as they are.
    """
    where, params = _where(reason, app_id, since, "pending", ids)
    with connect(database_url) as conn:
        if dry_run:
            row = conn.execute(
                f"SELECT count(*) FROM dead_letters WHERE {where}", params
            ).fetchone()
            return int(row[0]) if row else 0
        with conn.transaction():
            marked = conn.execute(
                f"UPDATE dead_letters SET redrive_status = 'discarded' WHERE {where}", params
            ).rowcount
    return int(marked)


def redrive(
    database_url: str,
    send: Callable[[str, bytes | None, bytes], None],
    *,
    reason: str | None = None,
    app_id: str | None = None,
    since: dt.datetime | None = None,
    dry_run: bool = True,
    limit: int = 10_000,
) -> tuple[int, int]:
    """Re-send pending, re-drivable letters; return ``(re-driven, skipped)``.

    ``send(topic, key, value)`` must return only once the broker confirmed.
    """
    where, params = _where(reason, app_id, since, "pending")
    redriven = skipped = 0
    with connect(database_url) as conn:
        rows = conn.execute(
            "SELECT day, id, source_topic, opportunity_key, payload FROM dead_letters "
            f"WHERE {where} ORDER BY created_at LIMIT %s",
            [*params, limit],
        ).fetchall()
        for day, letter_id, topic, key, payload in rows:
            if topic is None:
                skipped += 1
                continue
            redriven += 1
            if dry_run:
                continue
            send(topic, key.encode() if key else None, bytes(payload))
            with conn.transaction():
                conn.execute(
                    "UPDATE dead_letters SET redrive_status = 'redriven' "
                    "WHERE day = %s AND id = %s",
                    (day, letter_id),
                )
    return redriven, skipped
