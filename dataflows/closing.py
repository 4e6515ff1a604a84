"""The Bytewax stateful step around ``mediation.rules.state``.

Bytewax keys are *buckets* of opportunities, not single opportunities: a
bucket holds every ``opportunity_key`` of one input partition (the
partition number its records were read from: both topics are
co-partitioned, docs/architecture.md) whose ULID time falls in the same
``BUCKET_MS`` slice and whose random part falls in the same one of
``BUCKET_SHARDS`` shards. Its key is ``"<partition>:<slice>:<shard>"``.
Why: Bytewax looks at every key's notification time on every activation,
so with one key per opportunity (hundreds of thousands open or remembered
as tombstones) each input batch cost time in proportion to the state held,
and the worker slowed down as it filled (see docs/benchmarks.md). A bucket
keeps its own due-time heap and asks Bytewax for one notification, its
earliest.

Buckets follow time: requests of one slice arrive together and their
events soon after, so an epoch touches (and Bytewax snapshots) the recent
buckets, while older ones that only hold tombstones stay untouched until
they expire together.

A bucket closes on its own partition's event time (``clock_ms(partition)``:
the input watermark of that partition's two topic partitions), so a
partition's closing depends on nothing read elsewhere.

``BUCKET_MS`` and ``BUCKET_SHARDS`` are part of the recovery format: a
recovery store written with other values must not be resumed (the same
opportunity would be looked for in another bucket).

Each bucket also says how far back its open state reaches in the input
(the offset of its first record on each topic since it last held nothing
open): a ``PositionTick`` for a partition asks every open bucket of that
partition and answers with the partition's safe restart offsets
(``dataflows/positions.py``).

Each ``ClosingBucket`` only translates: items in, the due-time heap to and
from Bytewax's notification, the states out for snapshots. Every decision
is made by the pure rules, with ``now_ms`` taken from the injected clock at
this edge.
"""

from __future__ import annotations

import datetime as dt
import heapq
import threading
from collections.abc import Callable, Iterable

from bytewax.operators import StatefulBatchLogic

from mediation.clock import datetime_of_ms, now_ms
from mediation.rules import state as rules
from mediation.rules.model import Event, Opportunity, Output, Policy
from mediation.rules.ulid import ulid_time_ms_unchecked
from sinks.positions import PositionMark

from .positions import OpenBuckets, PartitionProgress, PositionTick

__all__ = [
    "BUCKET_MS",
    "BUCKET_SHARDS",
    "BucketSnapshot",
    "ClosingBucket",
    "StateCounts",
    "bucket_of",
    "closing_builder",
    "steady_pace",
]

BUCKET_MS = 10_000
BUCKET_SHARDS = 8
_MAX_DUE_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z
_MIN_RECHECK_MS = 50
# At most this long between looks at a bucket that is not due yet: event time
# can jump (a partition read to its end follows the wall clock once settled)
# and a bucket with no new input only wakes at its timer. A look at a bucket
# not due costs a heap peek, so even thousands of buckets are cheap at 1 s.
_MAX_RECHECK_MS = 1_000
_MIN_PACE = 0.05
# Event time within this of the wall clock is live: it moves as the wall
# clock does, whatever the pace measured over the last second (a partition
# settling at the end of its log holds it for a moment).
_LIVE_LAG_MS = 2_000
_RETAIN = StatefulBatchLogic.RETAIN
_DISCARD = StatefulBatchLogic.DISCARD

# What a bucket snapshots: its partition, the first offsets of its open state
# (opportunities topic, events topic), and opportunity_key -> its state
# (states are immutable).
BucketState = dict[str, rules.OpportunityState]
BucketSnapshot = tuple[int | None, int | None, int | None, BucketState]

BucketValue = Opportunity | Event | PositionTick
ClockMs = Callable[[int | None], int]


def bucket_of(opportunity_key: str, partition: int | None = None) -> str:
    """The Bytewax key of the bucket that holds ``opportunity_key`` (a checked ULID)
    read from input ``partition``."""
    # The last character is random (5 bits): spreads one time slice over shards.
    shard = ord(opportunity_key[-1]) % BUCKET_SHARDS
    return f"{partition}:{ulid_time_ms_unchecked(opportunity_key) // BUCKET_MS}:{shard}"


def steady_pace() -> float:
    """Event time moving as fast as the wall clock (no watermark to ask)."""
    return 1.0


class StateCounts:
    """How much state this process holds: open opportunities, tombstones, events.

    Updated on every state change (Bytewax workers of one process are
    threads, hence the lock); read by the worker's ``/metrics``, and by the
    buckets for the per-app bound on keys held without their opportunity
    (``orphan_keys``: app -> keys; ``Policy.max_orphan_keys_per_app``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = 0
        self.tombstones = 0
        self.open_events = 0
        self.orphan_keys: dict[str, int] = {}

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
            self.open_events += sign * len(state.events)
            holder = rules.orphan_holder(state)
            if holder is not None:
                held = self.orphan_keys.get(holder, 0) + sign
                if held:
                    self.orphan_keys[holder] = held
                else:
                    del self.orphan_keys[holder]  # apps come and go: keep only the holding
        elif isinstance(state, rules.Archived):
            self.tombstones += sign


class ClosingBucket(StatefulBatchLogic[BucketValue, Output | PositionMark, BucketSnapshot]):
    def __init__(
        self,
        resume: BucketSnapshot | None,
        policy: Policy,
        clock_ms: ClockMs,
        drain_on_eof: bool,
        wall_ms: Callable[[], int] = now_ms,
        event_time_pace: Callable[[], float] = steady_pace,
        counts: StateCounts | None = None,
        progress: PartitionProgress | None = None,
        open_buckets: OpenBuckets | None = None,
    ):
        self._policy = policy
        self._clock_ms = clock_ms  # partition -> event time: the input watermark in production
        self._wall_ms = wall_ms  # what Bytewax's notification timer runs on
        self._event_time_pace = event_time_pace  # event ms per wall ms, lately
        self._drain_on_eof = drain_on_eof
        # Always counted: the per-app bound on held orphan keys needs it.
        self._counts = counts if counts is not None else StateCounts()
        self._progress = progress
        self._open_buckets = open_buckets
        self._states: BucketState = {}
        # (due_ms, key) per state with a due time; an entry whose due time is
        # no longer its key's (``_due_of``) is stale and skipped when popped.
        self._heap: list[tuple[int, str]] = []
        self._due_of: dict[str, int] = {}
        # The input partition of every record here (None until the first).
        self.partition: int | None = None
        # States that are Open; and the offsets of the first record on each
        # topic since the bucket last held nothing open (how far back a
        # restart must read to rebuild them).
        self._open = 0
        self.first_opportunity_offset: int | None = None
        self.first_event_offset: int | None = None
        if resume is not None:
            self.partition, first_opportunity, first_event, states = resume
            for key, state in states.items():
                self._store(key, None, rules.from_snapshot(state))
            self.first_opportunity_offset, self.first_event_offset = first_opportunity, first_event
            self._track_open()

    def _store(
        self, key: str, before: rules.OpportunityState | None, after: rules.OpportunityState | None
    ) -> None:
        if after is before:
            return
        self._counts.change(before, after)
        self._open += isinstance(after, rules.Open) - isinstance(before, rules.Open)
        if after is None:
            del self._states[key]
            self._due_of.pop(key, None)
            return
        self._states[key] = after
        due = rules.due_at_ms(after, self._policy)
        if due is None:
            self._due_of.pop(key, None)
        elif self._due_of.get(key) != due:
            self._schedule(key, due)

    def _track_open(self) -> None:
        """Register with (or leave) the partition's open buckets after a change."""
        if self._open:
            if self._open_buckets is not None:
                self._open_buckets.add(self)
            return
        self.first_opportunity_offset = self.first_event_offset = None
        if self._open_buckets is not None:
            self._open_buckets.discard(self)

    def _schedule(self, key: str, due: int) -> None:
        self._due_of[key] = due
        heapq.heappush(self._heap, (due, key))

    def _verdict(self, outputs: list[Output]) -> tuple[Iterable[Output | PositionMark], bool]:
        self._track_open()
        return outputs, _RETAIN if self._states else _DISCARD

    def _note_first_offsets(self, values: list[Opportunity | Event]) -> None:
        # Records reach a bucket in offset order per topic: the first one
        # seen since nothing was open is the oldest its open state can hold.
        for value in values:
            if self.first_event_offset is not None and self.first_opportunity_offset is not None:
                return
            offset = value.source_offset
            if offset is None:
                continue
            if type(value) is Event:
                if self.first_event_offset is None:
                    self.first_event_offset = offset
            elif self.first_opportunity_offset is None:
                self.first_opportunity_offset = offset

    def on_batch(self, values: list[BucketValue]) -> tuple[Iterable[Output | PositionMark], bool]:
        first = values[0]
        if type(first) is PositionTick:
            # A tick has a key of its own: it only asks the open buckets.
            return self._marks(values), _DISCARD  # type: ignore[arg-type]
        return self._apply(values)  # type: ignore[arg-type]

    def _marks(self, ticks: list[PositionTick]) -> list[Output | PositionMark]:
        if self._open_buckets is None:
            return []
        marks = [self._open_buckets.mark(tick) for tick in ticks]
        return [mark for mark in marks if mark is not None]

    def _apply(
        self, values: list[Opportunity | Event]
    ) -> tuple[Iterable[Output | PositionMark], bool]:
        first = values[0]
        if self.partition is None:
            self.partition = first.source_partition
        if self._progress is not None:
            self._progress.applied(self.partition, len(values))
        if self.first_event_offset is None or self.first_opportunity_offset is None:
            self._note_first_offsets(values)
        now = self._clock_ms(self.partition)
        policy = self._policy
        states = self._states
        orphan_keys = self._counts.orphan_keys
        outputs: list[Output] = []
        for value in values:
            key = value.opportunity_key
            before = states.get(key)
            if isinstance(value, Opportunity):
                after, produced = rules.on_opportunity(before, value, now, policy)
            elif before is None:  # a new key: held unless its app holds too many
                held = orphan_keys.get(value.app_id, 0)
                after, produced = rules.on_event(before, value, now, policy, held)
            else:
                after, produced = rules.on_event(before, value, now, policy)
            self._store(key, before, after)
            if produced:
                outputs.extend(produced)
        return self._verdict(outputs)

    def on_notify(self) -> tuple[Iterable[Output | PositionMark], bool]:
        now = self._clock_ms(self.partition)
        outputs: list[Output] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, key = heapq.heappop(heap)
            if self._due_of.get(key) != due:
                continue  # stale: the key's state changed since this was pushed
            del self._due_of[key]  # popped; _store schedules the next state
            before = self._states[key]
            after, produced = rules.on_tick(before, now, self._policy)
            if after is before:
                # Not expected (the due time is the rules' own); look again
                # later rather than loop here or lose the key's timer.
                self._schedule(key, now + _MIN_RECHECK_MS)
                continue
            self._store(key, before, after)
            outputs.extend(produced)
        return self._verdict(outputs)

    def on_eof(self) -> tuple[Iterable[Output | PositionMark], bool]:
        if not self._drain_on_eof:
            return [], _RETAIN
        outputs: list[Output] = []
        for key in sorted(self._states):  # a fixed order: tests compare outputs
            state: rules.OpportunityState | None = self._states[key]
            before = state
            # Open -> Archived -> forgotten: drain until nothing is left.
            while state is not None:
                state, produced = rules.drain(state, self._policy)
                outputs.extend(produced)
            self._store(key, before, None)
        return self._verdict(outputs)

    def _earliest_due(self) -> int | None:
        heap = self._heap
        while heap and self._due_of.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # drop stale entries so the head is real
        return heap[0][0] if heap else None

    def notify_at(self) -> dt.datetime | None:
        due = self._earliest_due()
        if due is None:
            return None
        now = self._clock_ms(self.partition)
        if due > now:
            # Not due in event time yet. Bytewax wakes us on the wall clock;
            # when event time lags (catching up), ask again once event time
            # should have covered the gap at the pace it is moving, never in
            # a busy loop: a slow catch-up must not wake every bucket often.
            live = self._wall_ms() - now <= _LIVE_LAG_MS
            pace = 1.0 if live else max(self._event_time_pace(), _MIN_PACE)
            gap_ms = int(min(max((due - now) / pace, _MIN_RECHECK_MS), _MAX_RECHECK_MS))
            due = max(due, self._wall_ms() + gap_ms)
        # Decoding bounds every time to year 2500; the clamp keeps a bug there
        # from ever crashing the timer.
        return datetime_of_ms(min(max(due, 0), _MAX_DUE_MS))

    def snapshot(self) -> BucketSnapshot:
        # A shallow copy is an immutable snapshot: the states themselves are.
        return (
            self.partition,
            self.first_opportunity_offset,
            self.first_event_offset,
            dict(self._states),
        )


def closing_builder(
    policy: Policy,
    clock_ms: ClockMs,
    drain_on_eof: bool,
    event_time_pace: Callable[[], float] = steady_pace,
    counts: StateCounts | None = None,
    progress: PartitionProgress | None = None,
    open_buckets: OpenBuckets | None = None,
) -> Callable[[BucketSnapshot | None], ClosingBucket]:
    # One count for every bucket of this process (the held-orphan bound is per process).
    counts = counts if counts is not None else StateCounts()

    def build(resume: BucketSnapshot | None) -> ClosingBucket:
        return ClosingBucket(
            resume,
            policy,
            clock_ms,
            drain_on_eof,
            event_time_pace=event_time_pace,
            counts=counts,
            progress=progress,
            open_buckets=open_buckets,
        )

    return build
