"""Replay requests and jobs as ``replay_records`` rows: recorded, claimed, leased, finished.

Replay (``replay/run.py``, ``replay/jobs.py``) decides what to replay and
when; the reads and writes of its rows are here. A job's row moves
``queued`` -> ``running`` (claimed with a lease its runner renews) ->
``done`` or ``failed``; a row whose lease ran out is claimed again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

__all__ = [
    "ClaimedJob",
    "claim_job",
    "finish_replay",
    "lock_and_count_open_replays",
    "read_replay",
    "release_job",
    "renew_lease",
    "start_replay",
]


def start_replay(
    conn: psycopg.Connection,
    *,
    requested_by: str,
    selector: Mapping[str, Any],
    mode: str,
    rule_version: str,
    config_version: int | None,
    status: str,
    output_format: str | None,
) -> int:
    """Record a replay request (``running``, or a job ``queued`` with its format); its id."""
    row = conn.execute(
        "INSERT INTO replay_records (requested_by, selector, mode, rule_version, config_version, "
        "status, output_format) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            requested_by,
            Jsonb(selector),
            mode,
            rule_version,
            config_version,
            status,
            output_format,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def finish_replay(
    conn: psycopg.Connection,
    replay_id: int,
    *,
    result_hash: str | None,
    summary: Mapping[str, Any] | None,
    records: int | None,
    location: str | None,
    error: str | None,
) -> None:
    """Mark the request ``done`` (hash, summary, where the result is) or ``failed`` (``error``)."""
    conn.execute(
        "UPDATE replay_records SET status = %s, result_hash = %s, diff_summary = %s, "
        "records = %s, result_location = %s, error = %s, finished_at = %s WHERE id = %s",
        (
            "failed" if error else "done",
            result_hash,
            Jsonb(summary) if summary is not None else None,
            records,
            location,
            error,
            dt.datetime.now(dt.UTC),
            replay_id,
        ),
    )


@dataclass(frozen=True)
class ClaimedJob:
    replay_id: int
    selector: dict[str, Any]
    mode: str
    rule_version: str
    config_version: int | None
    output_format: str | None


def claim_job(conn: psycopg.Connection, lease_s: int) -> ClaimedJob | None:
    """The oldest queued job (or one whose runner's lease ran out), now leased to the caller."""
    row = conn.execute(
        "UPDATE replay_records SET status = 'running', "
        "lease_until = now() + make_interval(secs => %s) "
        "WHERE id = (SELECT id FROM replay_records WHERE status = 'queued' "
        "OR (status = 'running' AND lease_until < now()) ORDER BY id LIMIT 1 "
        "FOR UPDATE SKIP LOCKED) "
        "RETURNING id, selector, mode, rule_version, config_version, output_format",
        (lease_s,),
    ).fetchone()
    if row is None:
        return None
    replay_id, selector, mode, rule_version, config_version, output_format = row
    return ClaimedJob(int(replay_id), selector, mode, rule_version, config_version, output_format)


def renew_lease(conn: psycopg.Connection, replay_id: int, lease_s: int) -> None:
    conn.execute(
        "UPDATE replay_records SET lease_until = now() + make_interval(secs => %s) WHERE id = %s",
        (lease_s, replay_id),
    )


def release_job(conn: psycopg.Connection, replay_id: int) -> None:
    """Give a running job back to the queue."""
    conn.execute(
        "UPDATE replay_records SET status = 'queued', lease_until = NULL "
        "WHERE id = %s AND status = 'running'",
        (replay_id,),
    )


# The columns the replay API shows, in its order, under its names.
_SHOWN = (
    ("id", "replay_id"),
    ("requested_by", "requested_by"),
    ("selector", "selector"),
    ("mode", "mode"),
    ("rule_version", "rule_version"),
    ("config_version", "config_version"),
    ("status", "status"),
    ("result_hash", "result_hash"),
    ("diff_summary", "summary"),
    ("records", "records"),
    ("result_location", "result_location"),
    ("error", "error"),
    ("created_at", "created_at"),
    ("finished_at", "finished_at"),
    ("output_format", "format"),
)


def read_replay(conn: psycopg.Connection, replay_id: int) -> dict[str, Any] | None:
    """A replay record under the names the replay API shows (``replay.jobs.job_state``)."""
    row = conn.execute(
        f"SELECT {', '.join(column for column, _name in _SHOWN)} FROM replay_records WHERE id = %s",
        (replay_id,),
    ).fetchone()
    if row is None:
        return None
    return {name: value for (_column, name), value in zip(_SHOWN, row, strict=True)}


def lock_and_count_open_replays(conn: psycopg.Connection) -> int:
    """How many replays are queued or running, with new ones held off until the transaction ends.

    Call it inside the transaction that enqueues the next one (the replay
    API): the lock admits one request at a time, so concurrent requests
    cannot overfill the queue.
    """
    conn.execute("LOCK TABLE replay_records IN SHARE ROW EXCLUSIVE MODE")
    row = conn.execute(
        "SELECT count(*) FROM replay_records WHERE status IN ('queued', 'running')"
    ).fetchone()
    return 0 if row is None else int(row[0])
