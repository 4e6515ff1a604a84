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

It is a ``FixedPartitionedSink``: items arrive keyed (``(key, item)``) and
are routed to ``partitions`` writers (each with its own thread and
connection), spread over the workers of the cluster.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from zlib import adler32

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

__all__ = ["BatchWriter", "PipelinedSink"]

X = TypeVar("X")

_QUEUED_BATCHES = 4  # handed over but not yet written, per partition
_STOP = object()


class BatchWriter(Protocol):
    def write(self, items: list[Any]) -> None: ...

    def close(self) -> None: ...


class _PipelinedPartition(StatefulSinkPartition[Any, None]):
    def __init__(self, writer: BatchWriter, name: str):
        self._writer = writer
        self._queue: queue.Queue[object] = queue.Queue(maxsize=_QUEUED_BATCHES)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is _STOP:
                    return
                if self._failure is None:  # after a failure: drain, write nothing
                    self._writer.write(batch)  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the worker thread
                self._failure = exc
            finally:
                self._queue.task_done()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError("the Postgres writer failed") from self._failure

    def write_batch(self, values: list[Any]) -> None:
        self._raise_failure()
        self._queue.put(values)  # blocks while the writer is _QUEUED_BATCHES behind

    def snapshot(self) -> None:
        # The epoch's progress may be committed only once its writes are.
        self._queue.join()
        self._raise_failure()

    def close(self) -> None:
        self._queue.join()
        self._queue.put(_STOP)
        self._thread.join()
        self._writer.close()
        self._raise_failure()


class PipelinedSink(FixedPartitionedSink[Any, None]):
    """``partitions`` writers, each from ``new_writer()``, fed ``(key, item)`` pairs."""

    def __init__(self, new_writer: Callable[[], BatchWriter], partitions: int = 2):
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self._new_writer = new_writer
        self._partitions = partitions

    def list_parts(self) -> list[str]:
        return [f"writer-{i}" for i in range(self._partitions)]

    def part_fn(self, item_key: str) -> int:
        return adler32(item_key.encode())

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _PipelinedPartition:
        return _PipelinedPartition(self._new_writer(), f"{step_id}-{for_part}")
