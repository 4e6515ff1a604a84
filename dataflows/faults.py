"""Crash drills: the worker kills itself at a chosen point of the Postgres sink.

``MEDIATION_CRASH_AT=before_write:N`` sends SIGKILL to this process just
before the N-th batch (counted per process) is written; ``after_write:N``
just after the N-th batch's transaction committed, before Bytewax can
snapshot the progress that produced it (the snapshot waits for the writer). The recovery drills
(``tests/integration/test_worker_recovery.py``, docs/operations.md) use it
to prove that a restart from the recovery store leaves Postgres exactly as
an uninterrupted run would. Unset, nothing is wrapped.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sinks.pipelined import BatchWriter
from sinks.positions import PositionMark

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


class _CrashingWriter:
    def __init__(self, inner: BatchWriter, point: CrashPoint, counter: _Counter):
        self._inner = inner
        self._point = point
        self._counter = counter

    def write(self, items: list[Any]) -> None:
        number = self._counter.next()
        if self._point.when == "before_write" and number == self._point.batch:
            _die()
        self._inner.write(items)
        if self._point.when == "after_write" and number == self._point.batch:
            _die()

    def record_positions(self, marks: list[PositionMark]) -> None:
        self._inner.record_positions(marks)

    def close(self) -> None:
        self._inner.close()


def with_crash_drill(
    new_writer: Callable[[], BatchWriter], setting: str | None
) -> Callable[[], BatchWriter]:
    """``new_writer`` itself, or wrapped to crash at ``setting`` (``MEDIATION_CRASH_AT``)."""
    if not setting:
        return new_writer
    point = CrashPoint.parse(setting)
    counter = _Counter()  # one count for every writer of this process
    return lambda: _CrashingWriter(new_writer(), point, counter)
