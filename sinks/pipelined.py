"""A Bytewax sink whose writes run in a writer thread, flushed at every snapshot.

Why: the worker thread otherwise waits for every Postgres transaction (the
server's COPY, index and commit work) before it reads and closes more
input. Here ``write_batch`` hands the batch to a writer thread (a bounded
queue: when the database is slower than the input, the dataflow waits, as
it did before) and the worker goes on.

Why it keeps the guarantees: Bytewax calls ``snapshot`` on every partition
at the end of each epoch, before that epoch's progress (input offsets and
closing state) is committed to the recovery store. ``snapshot`` returns
only once every batch handed over so far is committed in Postgres. So a
restart never resumes past a batch that is not in the database; batches
written again after a crash are absorbed by the idempotent writes, as
before. A writer failure is raised in the worker at its next call, which
stops the dataflow as a failing write always did.

It is a ``FixedPartitionedSink`` of one partition (a worker process owns
whole input partitions and writes what it closes itself): items arrive
keyed with one key, and the sink spreads them over ``writers`` writer
threads (each with its own connection) by ``opportunity_key``, so one
opportunity's rows are always written in order by the same writer.

A ``PositionMark`` (a partition's safe restart offsets,
``dataflows/positions.py``) must be recorded only once every item before
it is committed, whichever writer has it: it travels to every writer as a
barrier, and the last writer to pass the barrier records the marks.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol
from zlib import adler32

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from mediation.rules.model import ClosedOpportunity, LateEvent
from mediation.wire import DeadLetterRecord

from .positions import PositionMark

__all__ = ["BatchWriter", "PipelinedSink", "writer_key"]

_QUEUED_BATCHES = 4  # handed over but not yet written, per partition
_STOP = object()


class BatchWriter(Protocol):
    def write(self, items: list[Any]) -> None: ...

    def record_positions(self, marks: list[PositionMark]) -> None: ...

    def close(self) -> None: ...


def writer_key(item: Any) -> str:
    """What spreads items over writers: one opportunity's rows go to one writer."""
    if isinstance(item, DeadLetterRecord):
        return item.opportunity_key or item.id
    if isinstance(item, ClosedOpportunity):
        return item.opportunity.opportunity_key
    if isinstance(item, LateEvent):
        return item.stored.event.opportunity_key
    return item.opportunity_key  # type: ignore[no-any-return]  # OrphanEvents


class _Barrier:
    """Marks that wait until every writer has committed what came before them."""

    def __init__(self, marks: list[PositionMark], writers: int):
        self.marks = marks
        self._left = writers
        self._lock = threading.Lock()

    def passed(self) -> bool:
        """One writer is past it; True for the last one."""
        with self._lock:
            self._left -= 1
            return self._left == 0


class _Writer:
    """One writer thread with its connection, fed batches and barriers in order."""

    def __init__(self, writer: BatchWriter, name: str):
        self._writer = writer
        self._queue: queue.Queue[object] = queue.Queue(maxsize=_QUEUED_BATCHES)
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is _STOP:
                    return
                if self.failure is not None:
                    continue  # after a failure: drain, write nothing
                if isinstance(batch, _Barrier):
                    if batch.passed():
                        self._writer.record_positions(batch.marks)
                else:
                    self._writer.write(batch)  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the worker thread
                self.failure = exc
            finally:
                self._queue.task_done()

    def put(self, batch: object) -> None:
        self._queue.put(batch)  # blocks while the writer is _QUEUED_BATCHES behind

    def join(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.join()
        self._queue.put(_STOP)
        self._thread.join()
        self._writer.close()


class _PipelinedPartition(StatefulSinkPartition[Any, None]):
    def __init__(self, writers: list[_Writer]):
        self._writers = writers

    def _raise_failure(self) -> None:
        for writer in self._writers:
            if writer.failure is not None:
                raise RuntimeError("the Postgres writer failed") from writer.failure

    def write_batch(self, values: list[Any]) -> None:
        self._raise_failure()
        writers = self._writers
        count = len(writers)
        batches: list[list[Any]] = [[] for _ in writers]
        marks: list[PositionMark] = []
        for item in values:
            if isinstance(item, PositionMark):
                marks.append(item)
            else:
                batches[adler32(writer_key(item).encode()) % count].append(item)
        # The marks go after the whole batch: conservative, never early.
        barrier = _Barrier(marks, count) if marks else None
        for writer, batch in zip(writers, batches, strict=True):
            if batch:
                writer.put(batch)
            if barrier is not None:
                writer.put(barrier)

    def snapshot(self) -> None:
        # The epoch's progress may be committed only once its writes are.
        for writer in self._writers:
            writer.join()
        self._raise_failure()

    def close(self) -> None:
        for writer in self._writers:
            writer.close()
        self._raise_failure()


class PipelinedSink(FixedPartitionedSink[Any, None]):
    """``writers`` writers, each from ``new_writer()``, fed items keyed with one key."""

    def __init__(self, new_writer: Callable[[], BatchWriter], writers: int = 2):
        if writers < 1:
            raise ValueError("writers must be at least 1")
        self._new_writer = new_writer
        self._writers = writers

    def list_parts(self) -> list[str]:
        return ["writers"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _PipelinedPartition:
        return _PipelinedPartition(
            [_Writer(self._new_writer(), f"{step_id}-writer-{i}") for i in range(self._writers)]
        )
