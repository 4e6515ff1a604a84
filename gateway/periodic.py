"""A background job run every few seconds, stopped between runs.

Cancelling a Redis or Postgres call half-way can leave its connection in a
state that makes the client's own shutdown wait; stopping *between* runs
(with a bounded wait, then cancellation as a last resort) avoids that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["PeriodicTask"]

log = logging.getLogger(__name__)


class PeriodicTask:
    def __init__(self, name: str, interval_s: float, run: Callable[[], Awaitable[None]]):
        self._name = name
        self._interval_s = interval_s
        self._run = run
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self._name)

    async def stop(self, timeout_s: float = 5.0) -> None:
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            log.warning("%s did not stop within %.0fs; cancelling it", self._name, timeout_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)
            try:
                await self._run()  # once more after stop(): flushes what is pending
            except Exception as exc:  # a failed run must not end the loop
                log.warning("%s failed, will retry: %s", self._name, exc)
