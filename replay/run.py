"""Running a replay: a selection in, results out in key order, recorded in ``replay_records``.

``replay_results`` streams results unit by unit (``replay/unit.py``: a
time window of about ``CHUNK_ROWS`` opportunities, or a thousand keys, at
a time) so a long range never holds more than one unit in memory; with
``jobs`` above 1, ``run_replay`` spreads the units over worker processes
(``replay/parallel.py``) and writes their results in the same order.
``run_replay`` records the request, feeds every result to an output
(``replay/output.py``) and to a ``ResultDigest`` (hash and summary), and
records the outcome: the CLI and the API's inline answers and jobs all go
through it (the rows are ``storage/replay_jobs.py``'s). ``recompute`` is the closing record the
rules give for an opportunity's stored inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from mediation.rules.closure import RULE_VERSION, close_opportunity
from mediation.rules.model import ArchiveRecord
from mediation.rules.replay import CHUNK_ROWS, ReplayRequest
from storage.cold import ColdStore
from storage.replay_jobs import finish_replay, start_replay
from storage.stored_records import StoredInputs

from .digest import ResultDigest
from .output import Output
from .parallel import ReplaySources, plan_units, replay_blocks
from .unit import unit_results, window_overrides

__all__ = [
    "ReplaySources",
    "finish_record",
    "recompute",
    "replay_results",
    "run_replay",
    "start_record",
]


def replay_results(
    conn: psycopg.Connection,
    store: ColdStore,
    request: ReplayRequest,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[dict[str, Any]]:
    """One result per selected opportunity, in key order, replayed in this process.

    A key selection answers every key, those without records with what is
    missing; a range answers the opportunities it finds.
    """
    overrides = window_overrides(conn, request)
    for unit in plan_units(conn, store, request.selection, chunk_rows):
        yield from unit_results(conn, store, request, unit, overrides)


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
    jobs: int = 1,
    sources: ReplaySources | None = None,
) -> tuple[int, ResultDigest, str | None]:
    """Replay into ``output`` and record it; the record's id, the digest and the output's location.

    ``publish`` takes the closed output's location and returns where it is
    kept (a job uploads its file to cold storage). ``conn`` must be in
    autocommit mode: the record is visible while the replay runs, and says
    ``failed`` (with the reason) if it does not finish. ``jobs`` above 1
    replays the units in that many worker processes, which open
    ``sources`` (``replay/parallel.py``); the output, hash, summary and
    record are the same as with ``jobs=1``, which replays in this process.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if jobs > 1 and sources is None:
        raise ValueError("a replay across processes needs the sources its workers open")
    if replay_id is None:
        replay_id = start_record(conn, requested_by, request)
    digest = ResultDigest()
    try:
        if sources is None or jobs == 1:
            for result in replay_results(conn, store, request, chunk_rows):
                output.write(result, digest.add(result))
        else:
            for lines, tally in replay_blocks(conn, store, request, sources, jobs, chunk_rows):
                digest.add_block(lines, tally)
                output.write_block(lines)
        location = output.close()
        if publish is not None:
            location = publish(location)
    except Exception as exc:
        output.abort()
        finish_record(conn, replay_id, None, error=f"{type(exc).__name__}: {exc}")
        raise
    finish_record(conn, replay_id, digest, location)
    return replay_id, digest, location
