"""Event-time progress of this process's Kafka inputs.

Closing must follow *event* time, not the wall clock: a worker catching up
on an hour of backlog reads opportunities whose close time passed long ago,
and if it closed them at once, their events (still further back in the
backlog) would arrive late, and events read before their opportunity would
become orphans. The worker's clock is therefore this watermark:

- per input partition, the broker timestamp of the last message read;
- a partition read to the end of its log (its next offset has reached the
  broker's high watermark, polled by ``dataflows/lag.py``) has nothing more
  to wait for up to the time of that poll: it advances with the polls
  (about a second behind the wall clock), once ``settle_ms`` (1 s,
  ``MEDIATION_DRAIN_SETTLE_MS``) have passed since its last read, as long
  as that high watermark was polled after the last read and is fresh
  (``stale_poll_ms``, 3 s); an older one may predate messages that have
  arrived since (a poller starved by a saturated CPU, a broker too busy to
  answer), so the partition then holds at what it has read. (Following
  the wall clock instead let a worker starved of CPU for more than the
  allowed lateness close opportunities whose events had arrived after the
  poll and were not read yet.);
- a partition known to hold data past what was read only advances as it
  is read, and holds while reading stops (a Postgres outage, or a saturated
  CPU, holds the dataflow: closing must hold with it), however fresh its
  last message was: a live partition that followed the wall clock let a
  stalled worker orphan events whose opportunity was still unread there;
- without a known high watermark, a partition read live (its last message
  was fresh when read) advances with the wall clock, minus the lag it was
  read with; one still catching up only advances as it is read;
- without a known high watermark, a partition that delivered nothing for
  ``idle_ms`` counts as drained;
- a partition this process reads (``assign``: Bytewax built its source
  partition here, from a known offset) that holds data past that offset
  but has delivered nothing yet holds the watermark where it is, however
  long that takes: with several workers, or a large backlog, one partition
  may start delivering well after the others, and its opportunities' events
  must not find them closed;
- until the broker's high watermarks are known (the first poll), it holds;
- without assignments (no Kafka source told us), for ``idle_ms`` after
  start, while any partition that holds data has delivered nothing to this
  process, the watermark holds where it is;
- event time is kept per *partition number*: an opportunity and its events
  share one (the topics are co-partitioned, docs/architecture.md), so
  partition p's clock is the minimum over p's two topic partitions (the
  opportunities topic's and the events topic's), never ahead of the wall
  clock; what is read on other partitions does not hold it;
- and it is *released* only once every record of p read before it was
  computed has reached the closing step (``flight``: records of p sent
  and applied, ``dataflows/positions.py``). Between reading and closing
  lie Bytewax's queues, which a saturated CPU drains slowly; a value
  computed from the timestamps read must not close opportunities whose
  records are still queued there. Each computed value waits, with the
  number of records sent when it was computed, until as many are applied.

``now_ms()`` without a partition is the minimum over every partition seen
(the metrics' clock, and dead letters' times).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Mapping

from bytewax.connectors.kafka import KafkaSourceMessage

from mediation.clock import now_ms

__all__ = ["InputWatermark", "PartitionKey"]


PartitionKey = tuple[str, int]
_PACE_WINDOW_MS = 1_000
_MAX_PENDING = 10_000
_NOTHING_RELEASED = -(2**62)


class InputWatermark:
    def __init__(
        self,
        idle_ms: int = 10_000,
        live_lag_ms: int = 2_000,
        settle_ms: int = 1_000,
        wall_ms: Callable[[], int] = now_ms,
        high_watermarks: Callable[[], Mapping[PartitionKey, int]] | None = None,
        reuse_ms: int = 5,
        low_watermarks: Callable[[], Mapping[PartitionKey, int]] | None = None,
        flight: Callable[[int], tuple[int, int]] = lambda _partition: (0, 0),
        highs_polled_at: Callable[[], int | None] | None = None,
        stale_poll_ms: int = 3_000,
    ):
        self._idle_ms = idle_ms
        self._live_lag_ms = live_lag_ms
        self._settle_ms = settle_ms
        self._wall_ms = wall_ms
        self._high_watermarks = high_watermarks
        self._low_watermarks = low_watermarks
        self._flight = flight
        # When the high watermarks were polled; None: as of every computation.
        self._highs_polled_at = highs_polled_at
        self._stale_poll_ms = stale_poll_ms
        # Per partition: computed values not yet released, (value, records
        # sent when computed), and the value released last.
        self._pending: dict[int, collections.deque[tuple[int, int]]] = {}
        self._released: dict[int, int] = {}
        # (topic, partition) -> the offset this process starts reading it from
        self._assigned: dict[PartitionKey, int] = {}
        self._reuse_ms = reuse_ms
        self._started_ms = wall_ms()
        self._cached_at = -(2**62)  # wall ms the values below were computed at
        self._marks: dict[int, int] = {}  # partition -> released event time
        self._overall = 0  # the minimum over them (0: nothing closes)
        self._held = True
        self._pace = 1.0
        self._pace_anchor: tuple[int, int] | None = None  # (wall, watermark) a second ago
        # (topic, partition) -> (latest broker timestamp, wall time it was read, next offset)
        self._latest: dict[PartitionKey, tuple[int, int, int]] = {}
        # The source builds partitions and the metrics read positions on other threads.
        self._lock = threading.Lock()

    def observe(self, message: KafkaSourceMessage[bytes | None, bytes | None]) -> None:
        self.observe_batch((message,))

    def observe_batch(
        self, messages: Iterable[KafkaSourceMessage[bytes | None, bytes | None]]
    ) -> None:
        """Note what a batch of input messages says about event time and offsets.

        Folded per partition first, so the lock is taken once per batch.
        """
        batch: dict[PartitionKey, tuple[int, int]] = {}
        for message in messages:
            if message.timestamp is None or message.timestamp[1] <= 0:
                continue
            if message.topic is None or message.partition is None:
                continue
            key = (message.topic, message.partition)
            timestamp, next_offset = message.timestamp[1], (message.offset or 0) + 1
            seen = batch.get(key)
            if seen is not None:
                timestamp, next_offset = max(timestamp, seen[0]), max(next_offset, seen[1])
            batch[key] = (timestamp, next_offset)
        if not batch:
            return
        read_at = self._wall_ms()
        with self._lock:
            for key, (timestamp, next_offset) in batch.items():
                previous = self._latest.get(key, (timestamp, read_at, next_offset))
                self._latest[key] = (
                    max(timestamp, previous[0]),
                    read_at,
                    max(next_offset, previous[2]),
                )

    def assign(self, key: PartitionKey, start_offset: int) -> None:
        """This process reads ``key`` from ``start_offset`` (Bytewax built its source here)."""
        with self._lock:
            self._assigned[key] = max(0, start_offset)

    def next_offsets(self) -> dict[PartitionKey, int]:
        """Next offset to read per topic partition of this process, or where it starts."""
        with self._lock:
            offsets = dict(self._assigned)
            offsets.update((key, latest[2]) for key, latest in self._latest.items())
        return offsets

    def positions(self) -> dict[PartitionKey, int]:
        """Next offset to read per partition (what the lag metric compares)."""
        with self._lock:
            return {key: latest[2] for key, latest in self._latest.items()}

    def now_ms(self, partition: int | None = None) -> int:
        """Event time of ``partition`` (both its topic partitions); of all when None."""
        wall = self._wall_ms()
        # Asked for every batch and timer: a value a few ms old is as good
        # (lateness allowances are seconds) and saves a scan per call.
        if not 0 <= wall - self._cached_at < self._reuse_ms:
            self._refresh(wall)
        if partition is None:
            return self._overall
        mark = self._marks.get(partition)
        if mark is None:
            # Nothing read there yet: it holds where every partition holds.
            return self._overall
        return mark

    def _refresh(self, wall: int) -> None:
        computed = self._compute(wall)
        marks = {}
        for partition, value in computed.items():
            marks[partition] = self._release(partition, value)
        self._marks = marks
        self._overall = min(marks.values()) if marks else self._hold_all(wall)
        self._cached_at = wall
        mark = self._overall
        if self._pace_anchor is None:
            self._pace_anchor = (wall, mark)
        anchor_wall, anchor_mark = self._pace_anchor
        if wall - anchor_wall >= _PACE_WINDOW_MS:
            self._pace = max(0.0, (mark - anchor_mark) / (wall - anchor_wall))
            self._pace_anchor = (wall, mark)

    def _hold_all(self, wall: int) -> int:
        # No partition known at all: the last value (holding), or the wall
        # clock when nothing can be waited for.
        return self._overall if self._held else wall

    def _release(self, partition: int, computed: int) -> int:
        """The latest computed value of ``partition`` all of whose reads reached closing."""
        sent, applied = self._flight(partition)
        pending = self._pending.get(partition)
        if pending is None:
            pending = self._pending[partition] = collections.deque()
        released = self._released.get(partition, _NOTHING_RELEASED)
        if computed != (pending[-1][0] if pending else released):
            if len(pending) >= _MAX_PENDING:
                pending.pop()  # keep the oldest ones: dropping the newest only delays
            pending.append((computed, sent))
        while pending and pending[0][1] <= applied:
            released = pending.popleft()[0]
        self._released[partition] = released
        return released

    def pace(self) -> float:
        """Event-time ms per wall-clock ms over the last second or so (1.0 when live)."""
        return self._pace

    def _waiting_for_first_delivery(
        self, seen: set[PartitionKey], highs: Mapping[PartitionKey, int]
    ) -> set[int]:
        """Partitions with an assigned topic partition that holds data past its start
        but has delivered nothing."""
        lows = self._low_watermarks() if self._low_watermarks is not None else {}
        with self._lock:
            assigned = list(self._assigned.items())
        waiting = set()
        for key, start in assigned:
            if key in seen:
                continue
            high = highs.get(key)
            if high is None or high > max(start, lows.get(key, 0)):
                waiting.add(key[1])  # not polled yet, or data to read
        return waiting

    def _compute(self, wall: int) -> dict[int, int]:
        """partition -> its event time now (before release); {} to hold everything."""
        with self._lock:
            progress = list(self._latest.items())
            assigned_keys = list(self._assigned)
        highs = self._high_watermarks() if self._high_watermarks is not None else {}
        held = {partition: self._marks.get(partition, self._overall) for partition in self._marks}
        if self._high_watermarks is not None and not highs:
            # The broker has not been asked yet (just started): whether any
            # partition holds data is unknown, so nothing may close.
            self._held = True
            return held
        self._held = False
        seen = {key for key, _ in progress}
        waiting: set[int] = set()
        if assigned_keys:
            waiting = self._waiting_for_first_delivery(seen, highs)
        elif wall - self._started_ms < self._idle_ms and any(
            high > 0 and key not in seen for key, high in highs.items()
        ):
            # No Kafka source told us what it reads, just started: a
            # partition holding data that has delivered nothing yet may be
            # ours still warming up (its backlog must not find its
            # opportunities closed). Partitions already read to the end
            # before a restart never deliver: the hold ends ``idle_ms`` after
            # start. It holds where it is.
            self._held = True
            return held
        polled_at = self._highs_polled_at() if self._highs_polled_at is not None else wall
        polls_fresh = polled_at is not None and wall - polled_at <= self._stale_poll_ms
        # What the last poll proves: every message the broker held then (its
        # timestamp before the poll) is below the high watermark it gave.
        as_of_poll = min(wall, polled_at) if polled_at is not None else wall
        marks: dict[int, int] = {key[1]: as_of_poll for key in assigned_keys}
        for key, (timestamp, read_at, next_offset) in progress:
            partition = key[1]
            mark = marks.get(partition, wall)
            high = highs.get(key)
            if high is not None and next_offset >= high:
                drained = polls_fresh and polled_at is not None and polled_at >= read_at
                if drained and wall - read_at >= self._settle_ms:
                    # Read to the end of the log as of the poll: nothing older
                    # is still to come (not the wall clock: messages may have
                    # arrived since the poll, unread on a busy worker).
                    mark = min(mark, as_of_poll)
                else:
                    mark = min(mark, timestamp)  # what was read last is still on its way
            elif high is not None:
                mark = min(mark, timestamp)  # data waits to be read: only reading moves it
            elif wall - read_at <= self._idle_ms:
                lag_at_read = read_at - timestamp
                if lag_at_read <= self._live_lag_ms:
                    mark = min(mark, wall - lag_at_read)  # live: time passes as on the wall
                else:
                    mark = min(mark, timestamp)  # catching up: only reading moves it
            # else: quiet for long, end of log unknown: count it as drained
            marks[partition] = mark
        for partition in waiting:
            marks[partition] = held.get(partition, self._overall)  # hold (never moves back)
        return marks
