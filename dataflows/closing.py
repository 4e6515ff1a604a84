"""The Bytewax stateful step around ``mediation.rules.state``.

One ``ClosingLogic`` per ``opportunity_key``. It only translates: items in,
Bytewax's notification timer to and from ``due_at_ms``, the state out for
snapshots. Every decision is made by the pure rules, with ``now_ms`` taken
from the injected clock at this edge.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable

from bytewax.operators import StatefulLogic

from mediation.clock import datetime_of_ms, now_ms
from mediation.rules import state as rules
from mediation.rules.model import Event, Opportunity, Output, Policy

__all__ = ["ClosingLogic", "StateCounts", "closing_builder", "steady_pace"]

_MAX_DUE_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z
_MIN_RECHECK_MS = 50
_MAX_RECHECK_MS = 10_000
_MIN_PACE = 0.05
_RETAIN = StatefulLogic.RETAIN
_DISCARD = StatefulLogic.DISCARD


def steady_pace() -> float:
    """Event time moving as fast as the wall clock (no watermark to ask)."""
    return 1.0


class StateCounts:
    """How much state this process holds: open opportunities, tombstones, events.

    Updated on every state change (Bytewax workers of one process are
    threads, hence the lock); read by the worker's ``/metrics``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = 0
        self.tombstones = 0
        self.open_events = 0

    def change(
        self, before: rules.OpportunityState | None, after: rules.OpportunityState | None
    ) -> None:
        if before is after:
            return
        with self._lock:
            self._add(before, -1)
            self._add(after, 1)

    def _add(self, state: rules.OpportunityState | None, sign: int) -> None:
        if isinstance(state, rules.Open):
            self.open += sign
            self.open_events += sign * len(state.copies)
        elif isinstance(state, rules.Archived):
            self.tombstones += sign


class ClosingLogic(StatefulLogic[Opportunity | Event, Output, rules.OpportunityState]):
    def __init__(
        self,
        resume: rules.OpportunityState | None,
        policy: Policy,
        clock_ms: Callable[[], int],
        drain_on_eof: bool,
        wall_ms: Callable[[], int] = now_ms,
        event_time_pace: Callable[[], float] = steady_pace,
        counts: StateCounts | None = None,
    ):
        self._counts = counts
        if counts is not None:
            counts.change(None, resume)
        self._state = resume
        self._policy = policy
        self._clock_ms = clock_ms  # event time: the input watermark in production
        self._wall_ms = wall_ms  # what Bytewax's notification timer runs on
        self._event_time_pace = event_time_pace  # event ms per wall ms, lately
        self._drain_on_eof = drain_on_eof
        # due_at_ms of the state it was computed for: Bytewax asks notify_at
        # after every item and tick, and states are immutable, so identity
        # says whether it can have changed.
        self._due_state: rules.OpportunityState | None = None
        self._due_ms: int | None = None

    def _result(
        self, state: rules.OpportunityState | None, outputs: tuple[Output, ...]
    ) -> tuple[Iterable[Output], bool]:
        if self._counts is not None:
            self._counts.change(self._state, state)
        self._state = state
        return outputs, _DISCARD if state is None else _RETAIN

    def on_item(self, value: Opportunity | Event) -> tuple[Iterable[Output], bool]:
        now = self._clock_ms()
        if isinstance(value, Opportunity):
            return self._result(*rules.on_opportunity(self._state, value, now, self._policy))
        return self._result(*rules.on_event(self._state, value, now, self._policy))

    def on_notify(self) -> tuple[Iterable[Output], bool]:
        now = self._clock_ms()
        if self._state is self._due_state and self._due_ms is not None and now < self._due_ms:
            # A re-check while event time lags: on_tick would change nothing.
            return (), _RETAIN
        return self._result(*rules.on_tick(self._state, now, self._policy))

    def on_eof(self) -> tuple[Iterable[Output], bool]:
        if not self._drain_on_eof:
            return (), _RETAIN
        outputs: list[Output] = []
        state = self._state
        # Open -> Archived -> forgotten: drain until nothing is left.
        while state is not None:
            state, produced = rules.drain(state, self._policy)
            outputs.extend(produced)
        return self._result(state, tuple(outputs))

    def notify_at(self) -> dt.datetime | None:
        if self._state is not self._due_state or self._state is None:
            self._due_state = self._state
            self._due_ms = rules.due_at_ms(self._state, self._policy)
        due = self._due_ms
        if due is None:
            return None
        now = self._clock_ms()
        if due > now:
            # Not due in event time yet. Bytewax wakes us on the wall clock;
            # when event time lags (catching up), ask again once event time
            # should have covered the gap at the pace it is moving, never in
            # a busy loop: a slow catch-up must not wake every open key often.
            pace = max(self._event_time_pace(), _MIN_PACE)
            gap_ms = int(min(max((due - now) / pace, _MIN_RECHECK_MS), _MAX_RECHECK_MS))
            due = max(due, self._wall_ms() + gap_ms)
        # Decoding bounds every time to year 2500; the clamp keeps a bug there
        # from ever crashing the timer.
        return datetime_of_ms(min(max(due, 0), _MAX_DUE_MS))

    def snapshot(self) -> rules.OpportunityState:
        if self._state is None:  # Bytewax never snapshots discarded logic
            raise RuntimeError("snapshot of a discarded opportunity state")
        return self._state


def closing_builder(
    policy: Policy,
    clock_ms: Callable[[], int],
    drain_on_eof: bool,
    event_time_pace: Callable[[], float] = steady_pace,
    counts: StateCounts | None = None,
) -> Callable[[rules.OpportunityState | None], ClosingLogic]:
    def build(resume: rules.OpportunityState | None) -> ClosingLogic:
        return ClosingLogic(
            resume,
            policy,
            clock_ms,
            drain_on_eof,
            event_time_pace=event_time_pace,
            counts=counts,
        )

    return build
