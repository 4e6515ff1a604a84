"""A replay across processes: its units in a pool of workers, their results back in order.

The units of a replay (``replay/unit.py``: days, and windows within a day)
are independent. ``replay_blocks`` plans them as a replay in one process
does, sends them to ``jobs`` worker processes, and hands back each unit's
results, in unit order, as one block of canonical lines with its tally
(``replay/digest.py``): the runner writes the blocks as they come, so the
output, the hash and the summary are byte for byte those of one process.

- Workers start from the ``forkserver`` (``spawn`` where there is none):
  a clean process that imported this module once, never a fork of a
  runner holding threads and Postgres connections. Each worker opens its
  own connection and cold store from ``ReplaySources`` (picklable) and
  keeps them for the replay. The forkserver itself stays for the life of
  the runner (a job runner's later replays start their workers from it).
- Memory is bounded: at most ``2 * jobs`` units are submitted and not yet
  written; a unit's block is about ``CHUNK_ROWS`` results.
- A unit that fails fails the replay with the unit's error: the units not
  started are cancelled, those running finish, and the pool is shut down
  (every worker joined) before the error reaches the caller.
- A selection of fewer than two units runs in this process: a pool would
  only add its start-up.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import chain, islice
from multiprocessing.context import BaseContext
from multiprocessing.util import Finalize

import psycopg

from mediation.rules.replay import CHUNK_ROWS, ReplayRequest, Selection
from mediation.settings import DEFAULT_AWS_REGION, Settings
from storage.cold import ColdStore, open_cold_store
from storage.db import connect

from . import cold
from .digest import Tally, canonical_line
from .unit import Overrides, unit_results, window_overrides

__all__ = ["Block", "ReplaySources", "plan_units", "replay_blocks"]

# One block: the canonical lines of a unit's results, and their tally.
Block = tuple[bytes, Tally]


@dataclass(frozen=True)
class ReplaySources:
    """What a worker process opens to read: Postgres and the cold store (picklable)."""

    database_url: str = field(repr=False)
    cold_storage_url: str
    aws_endpoint_url: str | None = None
    aws_region: str = DEFAULT_AWS_REGION
    aws_credentials_set: bool = False

    @classmethod
    def of(cls, settings: Settings) -> ReplaySources:
        return cls(
            settings.database_url,
            settings.cold_storage_url,
            settings.aws_endpoint_url,
            settings.aws_region,
            settings.aws_credentials_set,
        )

    def open_store(self) -> ColdStore:
        return open_cold_store(
            self.cold_storage_url,
            self.aws_endpoint_url,
            region=self.aws_region,
            credentials_set=self.aws_credentials_set,
        )


def plan_units(
    conn: psycopg.Connection, store: ColdStore, selection: Selection, chunk_rows: int = CHUNK_ROWS
) -> Iterator[Selection]:
    """The units of a replay of ``selection``, in key order (a range: sized by its stored days)."""
    day_rows = cold.opportunities_per_day(conn, store, selection) if selection.is_range else None
    return selection.chunks(day_rows, chunk_rows)


def unit_block(
    conn: psycopg.Connection,
    store: ColdStore,
    request: ReplayRequest,
    unit: Selection,
    overrides: Overrides | None,
) -> Block:
    """A unit's results as canonical lines, with their tally."""
    tally = Tally()
    lines = []
    for result in unit_results(conn, store, request, unit, overrides):
        tally.add(result)
        lines.append(canonical_line(result))
    return b"".join(lines), tally


# Units and requests cross to the workers as plain tuples: the rules' frozen,
# slotted dataclasses (and their compiled build) are not reliably picklable.
_PlainSelection = tuple[tuple[str, ...], int | None, int | None, str | None, str | None]
_PlainRequest = tuple[_PlainSelection, str, str | None, int | None]


def _plain_selection(selection: Selection) -> _PlainSelection:
    return (selection.keys, selection.start_ms, selection.end_ms, selection.app_id,
            selection.placement_id)  # fmt: skip


def _plain_request(request: ReplayRequest) -> _PlainRequest:
    return (_plain_selection(request.selection), request.mode, request.rule_version,
            request.config_version)  # fmt: skip


def _request(plain: _PlainRequest) -> ReplayRequest:
    selection, mode, rule_version, config_version = plain
    return ReplayRequest(Selection(*selection), mode, rule_version, config_version)


@dataclass
class _Worker:
    conn: psycopg.Connection
    store: ColdStore
    request: ReplayRequest
    overrides: Overrides | None


_worker: _Worker | None = None  # this worker process's connection, store and request


def _start_worker(sources: ReplaySources, plain_request: _PlainRequest) -> None:
    global _worker
    # Ctrl-C reaches the whole process group: the runner alone stops the
    # replay (and shuts the pool down); a worker stopping on its own would
    # break the pool instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    request = _request(plain_request)
    conn = connect(sources.database_url, autocommit=True)
    # Closed when the pool stops the worker (multiprocessing's exit hooks; atexit does not run).
    Finalize(conn, conn.close, exitpriority=10)
    _worker = _Worker(conn, sources.open_store(), request, window_overrides(conn, request))


def _run_unit(plain_unit: _PlainSelection) -> Block:
    worker = _worker
    if worker is None:
        raise RuntimeError("replay worker used before it started")
    unit = Selection(*plain_unit)
    try:
        return unit_block(worker.conn, worker.store, worker.request, unit, worker.overrides)
    except Exception as exc:
        if _travels(exc):
            raise
        # The runner must get the error itself, not a broken pool.
        raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc


def _travels(exc: Exception) -> bool:
    """Whether ``exc`` survives the trip to the runner (pickled, then unpickled)."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return False
    return True


def _context() -> BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that imported the replay once: they start in milliseconds.
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def replay_blocks(
    conn: psycopg.Connection,
    store: ColdStore,
    request: ReplayRequest,
    sources: ReplaySources,
    jobs: int,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[Block]:
    """The replay's blocks in unit order, replayed by up to ``jobs`` worker processes.

    ``conn`` and ``store`` plan the units (and replay them when there are
    fewer than two); the workers open their own from ``sources``.
    """
    units = plan_units(conn, store, request.selection, chunk_rows)
    head = list(islice(units, jobs))
    if len(head) < 2:
        overrides = window_overrides(conn, request)
        for unit in head:
            yield unit_block(conn, store, request, unit, overrides)
        return
    pool = ProcessPoolExecutor(
        len(head),
        mp_context=_context(),
        initializer=_start_worker,
        initargs=(sources, _plain_request(request)),
    )
    pending: deque[Future[Block]] = deque()
    try:
        for unit in chain(head, units):
            pending.append(pool.submit(_run_unit, _plain_selection(unit)))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        # On a unit's error (or a caller that stops reading): cancel what has
        # not started, let the running units end, and join every worker.
        pool.shutdown(wait=True, cancel_futures=True)
