"""A clean stop on SIGTERM or SIGINT: the input ends, Bytewax finishes the epoch and exits.

Left to itself, ``bytewax.run`` dies at once on SIGTERM (Python's default)
and turns SIGINT into a ``KeyboardInterrupt`` that aborts the Rust
runtime mid-epoch (a panic, exit 1). Instead ``StopSignals.install``
replaces both handlers with one that only records the request: Bytewax's
main thread keeps running its loop (it calls Python's signal handlers
while it waits for the worker threads), and every input partition
wrapped by ``StoppablePartition`` reports the end of its input at its next
batch. With all inputs at their end, Bytewax completes the current epoch
the ordinary way: the stateful step keeps its state (the worker does not
drain on end of input), every sink partition is flushed and closed (the
Postgres writers commit what they were handed), the recovery store
records the final snapshot, and the process exits 0. A restart with the
same ``-r`` resumes from there: nothing lost, nothing read twice.

``STOP_GRACE_S`` is what a stop may take (docs/operations.md; the compose
file's ``stop_grace_period`` for the workers): the epoch's last batches
and their Postgres commits, normally well under a second. A stop that
takes longer (Postgres unreachable, the writers waiting it out) is then
killed, which the recovery store makes safe.

Exactly one line is logged, once the dataflow has stopped. A second signal
while stopping exits at once (status 1), as a crash would; the recovery
store makes that safe too, at the cost of re-reading the last epoch.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable
from types import FrameType
from typing import Any, Generic, TypeVar

from bytewax.inputs import StatefulSourcePartition

__all__ = ["STOP_GRACE_S", "STOP_SIGNALS", "StopSignals", "StoppablePartition", "stoppable"]

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STOP_GRACE_S = 30

X = TypeVar("X")
S = TypeVar("S")


class StopSignals:
    """Whether this process was asked to stop, and by which signal."""

    def __init__(self) -> None:
        self._requested = threading.Event()
        self._signal_name: str | None = None
        self._since: float | None = None

    def requested(self) -> bool:
        return self._requested.is_set()

    def request(self, signal_name: str) -> None:
        """Ask for the stop (what the signal handler does; tests call it directly)."""
        if self._requested.is_set():
            return
        self._signal_name = signal_name
        self._since = time.monotonic()
        self._requested.set()

    def install(self) -> None:
        """Handle SIGTERM and SIGINT from now on (call in the main thread)."""
        for number in STOP_SIGNALS:
            signal.signal(number, self._on_signal)
        atexit.register(self._log_stopped)

    def _on_signal(self, number: int, _frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if self._requested.is_set():
            log.warning("second %s while stopping: exiting now, without finishing the epoch", name)
            os._exit(1)
        self.request(name)

    def _log_stopped(self) -> None:
        if self._since is None:
            return
        log.info(
            "worker stopped on %s in %.1fs: input closed at the end of the epoch, "
            "writers flushed, state snapshotted",
            self._signal_name,
            time.monotonic() - self._since,
        )


class StoppablePartition(StatefulSourcePartition[X, S], Generic[X, S]):
    """An input partition that reports its end once a stop was requested."""

    def __init__(self, inner: StatefulSourcePartition[X, S], stop: StopSignals):
        self._inner = inner
        self._stop = stop

    def next_batch(self) -> Iterable[X]:
        if self._stop.requested():
            raise StopIteration()
        return self._inner.next_batch()

    def next_awake(self) -> dt.datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> S:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


def stoppable(part: Any, stop: StopSignals | None) -> Any:
    """``part`` itself without a ``stop``, else wrapped so that it ends on request."""
    return part if stop is None else StoppablePartition(part, stop)
