"""Replay jobs: large replays run in the background, their result an object in cold storage.

A job is a ``replay_records`` row: ``enqueue`` writes it ``queued`` with
its output format, unsized (the replay API admits requests without
reading what they select: that is unbounded work, a range over years
touches millions of days). A runner (``mediation replay-jobs``, a process
of its own) ``claim``s the oldest one with a lease, sizes it (how many
opportunities each day of a range holds, ``replay.cold``) and replays it
chunk by chunk (across ``--jobs`` worker processes: ``replay/parallel.py``),
renews the lease as results stream, writes the output to
a local file, uploads it to ``_replays/<id>.<format>`` in cold storage, and
marks the row ``done`` with the result hash, the summary and the location
(or ``failed`` with the reason). The ``_`` keeps the outputs apart from the
tables (``docs/contracts.md`` section 7): not a table's directory, skipped
by dataset discovery of the store's root (pyarrow, pandas), and one level
above the files of a table (``<table>/day=.../part-N.parquet``), so a glob
over the tables' days never matches it. Outputs of older releases stay
where they were written (``replays/<id>.<format>``): the row holds the
location, so they are still found. A job whose runner died (lease run out)
is claimed again and replayed from the start: replay is deterministic, so
the result is the same. The rows are read and written by
``storage/replay_jobs.py``.
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
from storage.replay_jobs import claim_job, read_replay, release_job, renew_lease

from .digest import ResultDigest
from .output import JsonlOutput, Output, ParquetOutput
from .run import ReplaySources, run_replay, start_record

__all__ = [
    "JOB_FORMATS",
    "LEASE_S",
    "OUTPUT_PREFIX",
    "Job",
    "claim",
    "enqueue",
    "job_state",
    "output_key",
    "release",
    "run_job",
    "serve_jobs",
]

log = logging.getLogger(__name__)

JOB_FORMATS = ("jsonl", "parquet")
# The cold store's tree for job outputs (a sibling of the tables and of _manifests).
OUTPUT_PREFIX = "_replays"
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
    claimed = claim_job(conn, LEASE_S)
    if claimed is None:
        return None
    request = ReplayRequest(
        Selection.from_description(claimed.selector),
        claimed.mode,
        None if claimed.rule_version == RULE_VERSION else claimed.rule_version,
        claimed.config_version,
    )
    return Job(claimed.replay_id, request, claimed.output_format or "jsonl")


class _Leased:
    """An output that renews the job's lease every ``_RENEW_EVERY_S`` while results flow."""

    def __init__(self, output: Output, conn: psycopg.Connection, replay_id: int):
        self._output, self._conn, self._id = output, conn, replay_id
        self._renewed = time.monotonic()

    def write(self, result: dict[str, Any], line: bytes) -> None:
        self._output.write(result, line)
        self._renew()

    def write_block(self, lines: bytes) -> None:
        self._output.write_block(lines)
        self._renew()

    def _renew(self) -> None:
        if time.monotonic() - self._renewed > _RENEW_EVERY_S:
            renew_lease(self._conn, self._id, LEASE_S)
            self._renewed = time.monotonic()

    def close(self) -> str | None:
        return self._output.close()

    def abort(self) -> None:
        self._output.abort()


def run_job(
    conn: psycopg.Connection,
    store: ColdStore,
    job: Job,
    *,
    jobs: int = 1,
    sources: ReplaySources | None = None,
) -> ResultDigest:
    """Replay the job into a file, upload it to cold storage, and record where it is.

    ``jobs`` above 1: across that many worker processes, which open ``sources``.
    """
    key = output_key(job.replay_id, job.output_format)
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
            jobs=jobs,
            sources=sources,
        )
    log.info(
        "replay job %d done: %d records in %.1f s (%d process%s)",
        job.replay_id,
        digest.records,
        time.monotonic() - started,
        jobs,
        "" if jobs == 1 else "es",
    )
    return digest


def output_key(replay_id: int, output_format: str) -> str:
    """Where a job's output goes in cold storage, relative to its root."""
    return f"{OUTPUT_PREFIX}/{replay_id}.{output_format}"


def release(conn: psycopg.Connection, replay_id: int) -> None:
    """Give a job back to the queue (its runner is stopping)."""
    release_job(conn, replay_id)


def serve_jobs(
    database_url: str,
    store: ColdStore,
    *,
    once: bool = False,
    poll_s: float = 2.0,
    jobs: int = 1,
    sources: ReplaySources | None = None,
) -> int:
    """Run jobs as they come (``mediation replay-jobs``); how many ran.

    SIGINT or SIGTERM mid-job gives the job back to the queue and returns.
    ``once``: return when the queue is empty. ``jobs``: the worker processes
    each job is replayed across (the runner's setting, not the job's: the
    runner's machine decides what it can spend), opening ``sources``.
    """
    if jobs > 1 and sources is None:
        raise ValueError("a replay across processes needs the sources its workers open")
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
                run_job(conn, store, job, jobs=jobs, sources=sources)
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
    state = read_replay(conn, replay_id)
    if state is None:
        return None
    for name in ("created_at", "finished_at"):
        if isinstance(state[name], dt.datetime):
            state[name] = state[name].isoformat()
    return state
