"""Running a replay: a selection in, results out in key order, recorded in ``replay_records``.

``replay_results`` streams results chunk by chunk (a time window of about
``CHUNK_ROWS`` opportunities, or a thousand keys, at a time) so a long
range never holds more than one chunk in memory. ``run_replay`` records
the request, feeds every result to an output (``replay/output.py``) and
to a ``ResultDigest`` (hash and summary), and records the outcome: the
CLI and the API's inline answers and jobs all go through it (the rows are
``storage/replay_jobs.py``'s). ``recompute`` is the closing record the
rules give for an opportunity's stored inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from mediation.rules.closure import RULE_VERSION, close_opportunity
from mediation.rules.model import ArchiveRecord
from mediation.rules.replay import (
    CHUNK_ROWS,
    ReplayRequest,
    ReplayRequestError,
    WindowOverride,
    missing_result,
    recompute_result,
    snapshot_result,
)
from mediation.rules.waterfall import ConfigError, parse_config
from storage.cold import ColdStore
from storage.configs import get_snapshot
from storage.replay_jobs import finish_replay, start_replay
from storage.stored_records import StoredInputs

from . import cold
from .digest import ResultDigest
from .output import Output

__all__ = [
    "finish_record",
    "recompute",
    "replay_results",
    "run_replay",
    "start_record",
]


class _WindowOverrides:
    """The named config snapshot of each app, read once per app."""

    def __init__(self, conn: psycopg.Connection, version: int):
        self._conn, self._version = conn, version
        self._of_app: dict[str, WindowOverride] = {}

    def __call__(self, app_id: str) -> WindowOverride:
        if app_id not in self._of_app:
            snapshot = get_snapshot(self._conn, app_id, self._version)
            if snapshot is None:
                raise ReplayRequestError(f"app {app_id} has no config version {self._version}")
            try:
                config = parse_config(self._version, snapshot.body)
            except ConfigError as exc:
                raise ReplayRequestError(f"app {app_id} config {self._version}: {exc}") from exc
            self._of_app[app_id] = WindowOverride(
                self._version, config.closure_window_ms, config.grace_ms, config.skew_tolerance_ms
            )
        return self._of_app[app_id]


def replay_results(
    conn: psycopg.Connection,
    store: ColdStore,
    request: ReplayRequest,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[dict[str, Any]]:
    """One result per selected opportunity, in key order.

    A key selection answers every key, those without records with what is
    missing; a range answers the opportunities it finds.
    """
    mode = request.mode
    overrides = _WindowOverrides(conn, request.config_version) if request.config_version else None
    selection = request.selection
    day_rows = cold.opportunities_per_day(conn, store, selection) if selection.is_range else None
    for chunk in selection.chunks(day_rows, chunk_rows):
        loaded = cold.load(conn, store, chunk)
        inputs, archives = loaded.inputs, loaded.archives
        keys = chunk.keys if not chunk.is_range else sorted(inputs.keys() | archives.keys())
        deleted = {day.isoformat() for day in loaded.deleted_days}
        for key in keys:
            stored, archive = inputs.get(key), archives.get(key)
            if stored is None or archive is None:
                missing = "archive record" if archive is None else "opportunity record"
                if deleted:
                    missing += f" (deleted by retention: {', '.join(sorted(deleted))})"
                yield missing_result(key, mode, missing)
            elif mode == "snapshot":
                yield snapshot_result(stored.opportunity, stored.events, archive)
            else:
                yield recompute_result(
                    stored.opportunity,
                    stored.events,
                    stored.late_events,
                    archive,
                    request.rule_version,
                    overrides(archive.app_id) if overrides else None,
                )


def start_record(
    conn: psycopg.Connection,
    requested_by: str,
    request: ReplayRequest,
    status: str = "running",
    output_format: str | None = None,
) -> int:
    """Record the request in ``replay_records`` (a job: ``queued``, its format); its id."""
    return start_replay(
        conn,
        requested_by=requested_by,
        selector=request.selection.describe(),
        mode=request.mode,
        rule_version=request.rule_version or RULE_VERSION,
        config_version=request.config_version,
        status=status,
        output_format=output_format,
    )


def finish_record(
    conn: psycopg.Connection,
    replay_id: int,
    digest: ResultDigest | None,
    location: str | None = None,
    error: str | None = None,
) -> None:
    """Mark the request done (hash, summary, where the result is) or failed (why)."""
    done = digest if digest and not error else None
    finish_replay(
        conn,
        replay_id,
        result_hash=done.hexdigest() if done else None,
        summary=done.summary() if done else None,
        records=done.records if done else None,
        location=location,
        error=error,
    )


def recompute(inputs: StoredInputs, include_late: bool = False) -> ArchiveRecord:
    """The closing record the rules give for the stored inputs."""
    events = inputs.events + (inputs.late_events if include_late else ())
    return close_opportunity(inputs.opportunity, events).archive


def run_replay(
    conn: psycopg.Connection,
    store: ColdStore,
    request: ReplayRequest,
    output: Output,
    *,
    requested_by: str,
    replay_id: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
    publish: Callable[[str | None], str | None] | None = None,
) -> tuple[int, ResultDigest, str | None]:
    """Replay into ``output`` and record it; the record's id, the digest and the output's location.

    ``publish`` takes the closed output's location and returns where it is
    kept (a job uploads its file to cold storage). ``conn`` must be in
    autocommit mode: the record is visible while the replay runs, and says
    ``failed`` (with the reason) if it does not finish.
    """
    if replay_id is None:
        replay_id = start_record(conn, requested_by, request)
    digest = ResultDigest()
    try:
        for result in replay_results(conn, store, request, chunk_rows):
            output.write(result, digest.add(result))
        location = output.close()
        if publish is not None:
            location = publish(location)
    except Exception as exc:
        output.abort()
        finish_record(conn, replay_id, None, error=f"{type(exc).__name__}: {exc}")
        raise
    finish_record(conn, replay_id, digest, location)
    return replay_id, digest, location
