"""Replay jobs: large replays run in the background, their result an object in cold storage.

A job is a ``replay_records`` row: ``enqueue`` writes it ``queued`` with
its output format, unsized (the replay API admits requests without
reading what they select: that is unbounded work, a range over years
touches millions of days). A runner (``mediation replay-jobs``, a process
of its own) ``claim``s the oldest one with a lease, sizes it (how many
opportunities each day of a range holds, ``replay.cold``) and replays it
chunk by chunk, renews the lease as results stream, writes the output to
a local file, uploads it to ``replays/<id>.<format>`` in cold storage, and
marks the row ``done`` with the result hash, the summary and the location
(or ``failed`` with the reason). A job whose runner died (lease run out)
is claimed again and replayed from the start: replay is deterministic, so
the result is the same.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from mediation.rules.closure import RULE_VERSION
from mediation.rules.replay import ReplayRequest, Selection
from storage.cold import ColdStore
from storage.db import connect

from .digest import ResultDigest
from .output import JsonlOutput, Output, ParquetOutput
from .run import run_replay, start_record

__all__ = [
    "JOB_FORMATS",
    "LEASE_S",
    "Job",
    "claim",
    "enqueue",
    "job_state",
    "release",
    "run_job",
    "serve_jobs",
]

log = logging.getLogger(__name__)

JOB_FORMATS = ("jsonl", "parquet")
LEASE_S = 120
_RENEW_EVERY_S = 20


@dataclass(frozen=True)
class Job:
    replay_id: int
    request: ReplayRequest
    output_format: str


def enqueue(
    conn: psycopg.Connection, request: ReplayRequest, requested_by: str, output_format: str
) -> int:
    if output_format not in JOB_FORMATS:
        raise ValueError(f"format must be one of {', '.join(JOB_FORMATS)}")
    return start_record(conn, requested_by, request, "queued", output_format)


def claim(conn: psycopg.Connection) -> Job | None:
    """The oldest queued job (or one whose runner's lease ran out), now leased to the caller."""
    row = conn.execute(
        "UPDATE replay_records SET status = 'running', "
        "lease_until = now() + make_interval(secs => %s) "
        "WHERE id = (SELECT id FROM replay_records WHERE status = 'queued' "
        "OR (status = 'running' AND lease_until < now()) ORDER BY id LIMIT 1 "
        "FOR UPDATE SKIP LOCKED) "
        "RETURNING id, selector, mode, rule_version, config_version, output_format",
        (LEASE_S,),
    ).fetchone()
    if row is None:
        return None
    replay_id, selector, mode, rule_version, config_version, output_format = row
    request = ReplayRequest(
        Selection.from_description(selector),
        mode,
        None if rule_version == RULE_VERSION else rule_version,
        config_version,
    )
    return Job(int(replay_id), request, output_format or "jsonl")


class _Leased:
    """An output that renews the job's lease every ``_RENEW_EVERY_S`` while results flow."""

    def __init__(self, output: Output, conn: psycopg.Connection, replay_id: int):
        self._output, self._conn, self._id = output, conn, replay_id
        self._renewed = time.monotonic()

    def write(self, result: dict[str, Any], line: bytes) -> None:
        self._output.write(result, line)
        if time.monotonic() - self._renewed > _RENEW_EVERY_S:
            self._conn.execute(
                "UPDATE replay_records SET lease_until = now() + make_interval(secs => %s) "
                "WHERE id = %s",
                (LEASE_S, self._id),
            )
            self._renewed = time.monotonic()

    def close(self) -> str | None:
        return self._output.close()

    def abort(self) -> None:
        self._output.abort()


def run_job(conn: psycopg.Connection, store: ColdStore, job: Job) -> ResultDigest:
    """Replay the job into a file, upload it to cold storage, and record where it is."""
    key = f"replays/{job.replay_id}.{job.output_format}"
    with tempfile.TemporaryDirectory(prefix="mediation-replay-") as scratch:
        path = Path(scratch) / f"result.{job.output_format}"
        output = JsonlOutput(path=path) if job.output_format == "jsonl" else ParquetOutput(path)
        started = time.monotonic()
        _, digest, _ = run_replay(
            conn,
            store,
            job.request,
            _Leased(output, conn, job.replay_id),
            requested_by="",
            replay_id=job.replay_id,
            publish=lambda _local: _upload(store, path, key),
        )
    log.info(
        "replay job %d done: %d records in %.1f s",
        job.replay_id,
        digest.records,
        time.monotonic() - started,
    )
    return digest


def release(conn: psycopg.Connection, replay_id: int) -> None:
    """Give a job back to the queue (its runner is stopping)."""
    conn.execute(
        "UPDATE replay_records SET status = 'queued', lease_until = NULL "
        "WHERE id = %s AND status = 'running'",
        (replay_id,),
    )


def serve_jobs(
    database_url: str, store: ColdStore, *, once: bool = False, poll_s: float = 2.0
) -> int:
    """Run jobs as they come (``mediation replay-jobs``); how many ran.

    SIGINT or SIGTERM mid-job gives the job back to the queue and returns.
    ``once``: return when the queue is empty.
    """
    ran = 0
    with connect(database_url, autocommit=True) as conn:
        while True:
            job = claim(conn)
            if job is None:
                if once:
                    return ran
                time.sleep(poll_s)
                continue
            try:
                run_job(conn, store, job)
            except KeyboardInterrupt:
                release(conn, job.replay_id)
                log.info("replay job %d given back to the queue", job.replay_id)
                return ran
            except Exception as exc:  # recorded as failed by run_replay; keep serving
                log.error("replay job %d failed: %s", job.replay_id, exc)
            ran += 1


def _upload(store: ColdStore, path: Path, key: str) -> str:
    store.upload(path, key)
    return store.location(key)


def job_state(conn: psycopg.Connection, replay_id: int) -> dict[str, Any] | None:
    """A replay record as the API shows it."""
    row = conn.execute(
        "SELECT id, requested_by, selector, mode, rule_version, config_version, status, "
        "result_hash, diff_summary, records, result_location, error, created_at, finished_at, "
        "output_format FROM replay_records WHERE id = %s",
        (replay_id,),
    ).fetchone()
    if row is None:
        return None
    names = ("replay_id", "requested_by", "selector", "mode", "rule_version", "config_version",
             "status", "result_hash", "summary", "records", "result_location", "error",
             "created_at", "finished_at", "format")  # fmt: skip
    state = dict(zip(names, row, strict=True))
    for name in ("created_at", "finished_at"):
        if isinstance(state[name], dt.datetime):
            state[name] = state[name].isoformat()
    return state
