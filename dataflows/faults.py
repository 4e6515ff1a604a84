"""Crash drills: the worker kills itself at a chosen point of the Postgres sink.

``MEDIATION_CRASH_AT=before_write:N`` sends SIGKILL to this process just
before the N-th batch (counted per process) is written; ``after_write:N``
just after the N-th batch's transaction committed, before Bytewax can
snapshot the progress that produced it. The recovery drills
(``tests/integration/test_worker_recovery.py``, docs/operations.md) use it
to prove that a restart from the recovery store leaves Postgres exactly as
an uninterrupted run would. Unset, nothing is wrapped.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

__all__ = ["CrashPoint", "with_crash_drill"]

_WHEN = ("before_write", "after_write")


@dataclass(frozen=True)
class CrashPoint:
    when: str
    batch: int

    @classmethod
    def parse(cls, text: str) -> CrashPoint:
        when, _, number = text.partition(":")
        if when not in _WHEN or not number.isdigit() or int(number) < 1:
            raise ValueError(
                f"MEDIATION_CRASH_AT: expected before_write:N or after_write:N, got {text!r}"
            )
        return cls(when, int(number))


class _Counter:
    """Batches written by this process, across its Bytewax worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def next(self) -> int:
        with self._lock:
            self._count += 1
            return self._count


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _CrashingPartition(StatelessSinkPartition[Any]):
    def __init__(self, inner: StatelessSinkPartition[Any], point: CrashPoint, counter: _Counter):
        self._inner = inner
        self._point = point
        self._counter = counter

    def write_batch(self, items: list[Any]) -> None:
        number = self._counter.next()
        if self._point.when == "before_write" and number == self._point.batch:
            _die()
        self._inner.write_batch(items)
        if self._point.when == "after_write" and number == self._point.batch:
            _die()

    def close(self) -> None:
        self._inner.close()


class _CrashingSink(DynamicSink[Any]):
    def __init__(self, inner: DynamicSink[Any], point: CrashPoint):
        self._inner = inner
        self._point = point
        self._counter = _Counter()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CrashingPartition:
        inner = self._inner.build(step_id, worker_index, worker_count)
        return _CrashingPartition(inner, self._point, self._counter)


def with_crash_drill(sink: DynamicSink[Any], setting: str | None) -> DynamicSink[Any]:
    """``sink`` itself, or wrapped to crash at ``setting`` (``MEDIATION_CRASH_AT``)."""
    if not setting:
        return sink
    return _CrashingSink(sink, CrashPoint.parse(setting))
