"""Where each input partition's work stands: records in flight, and a safe restart offset.

A worker process owns whole partitions (docs/architecture.md): partition
p's records, state, event time and writes stay in the process that reads
p. Two things are kept per partition here.

**Records in flight** (``PartitionProgress``). Between decoding a record
and applying it in the closing step lie Bytewax's queues; the input
watermark of p must not move past records of p still queued there, or
their opportunities would close without them. Decoding counts what it
sends per partition, the closing step what it applies; a watermark value
computed when ``sent`` records had gone out is released once ``applied``
has reached that count (``dataflows/watermark.py``). One Bytewax worker
per process and one channel from decoding to closing keep the records in
order, so equal counts mean every record sent is applied.

**Safe restart offsets** (``PositionTick`` -> ``PositionMark``). A
partition that moves to another process (rescaling N -> M, or a recovery
store lost with its disk) starts where its new owner's recovery store has
nothing: from the offsets where rebuilding its open state begins. Every
``POSITION_INTERVAL_MS`` the decode step sends each partition's closing
step a tick, after the records decoded before it, carrying the next offset
decoded on each of the partition's two topic partitions. The closing step
answers with a mark: per topic, the smallest of that offset and the first
offset of every bucket of the partition that still holds open state
(``ClosingBucket.first_*_offset``). Everything before the mark is closed
and its outputs precede the mark in the stream to the sink, which records
the mark in ``worker_positions`` only once every write before it is
committed (``sinks/pipelined.py``, ``sinks/positions.py``). Re-reading
from there rebuilds the open state; what it reads again of opportunities
already closed is absorbed by the idempotent writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from sinks.positions import PositionMark

__all__ = [
    "POSITION_INTERVAL_MS",
    "OpenBuckets",
    "PartitionProgress",
    "PositionTick",
]

POSITION_INTERVAL_MS = 2_000


@dataclass(frozen=True, slots=True)
class PositionTick:
    """Sent to a partition's closing step after the records decoded before it."""

    partition: int
    sent: int  # records of the partition sent to the closing step before this tick
    next_offsets: Mapping[str, int]  # topic -> next offset decoded (or the start offset)

    @property
    def key(self) -> str:
        # A Bytewax key of its own, apart from the partition's buckets.
        return f"{self.partition}:positions"


class PartitionProgress:
    """Records sent to the closing step and applied there, per partition.

    Written by the one Bytewax worker thread; read by the same thread (the
    watermark is computed there), so no lock.
    """

    def __init__(self) -> None:
        self._sent: dict[int | None, int] = {}
        self._applied: dict[int | None, int] = {}

    def sent(self, partition: int | None, count: int) -> None:
        self._sent[partition] = self._sent.get(partition, 0) + count

    def applied(self, partition: int | None, count: int) -> None:
        self._applied[partition] = self._applied.get(partition, 0) + count

    def counts(self, partition: int | None) -> tuple[int, int]:
        """(records sent, records applied) of ``partition``."""
        return self._sent.get(partition, 0), self._applied.get(partition, 0)


class OpenBucket(Protocol):
    """What a position mark reads of a bucket (``dataflows.closing.ClosingBucket``)."""

    @property
    def partition(self) -> int | None: ...
    @property
    def first_opportunity_offset(self) -> int | None: ...
    @property
    def first_event_offset(self) -> int | None: ...


class OpenBuckets:
    """The buckets of each partition that hold open state, to answer position ticks."""

    def __init__(
        self, opportunities_topic: str, events_topic: str, progress: PartitionProgress
    ) -> None:
        self._opportunities_topic = opportunities_topic
        self._events_topic = events_topic
        self._progress = progress
        self._by_partition: dict[int | None, set[OpenBucket]] = {}

    def add(self, bucket: OpenBucket) -> None:
        self._by_partition.setdefault(bucket.partition, set()).add(bucket)

    def discard(self, bucket: OpenBucket) -> None:
        held = self._by_partition.get(bucket.partition)
        if held is not None:
            held.discard(bucket)

    def mark(self, tick: PositionTick) -> PositionMark | None:
        """The partition's safe offsets as of ``tick``; None while records sent before it
        are still on their way (the next tick tries again)."""
        _sent, applied = self._progress.counts(tick.partition)
        if applied < tick.sent:
            return None
        offsets = dict(tick.next_offsets)
        for bucket in self._by_partition.get(tick.partition, ()):
            for topic, first in (
                (self._opportunities_topic, bucket.first_opportunity_offset),
                (self._events_topic, bucket.first_event_offset),
            ):
                if first is not None and topic in offsets:
                    offsets[topic] = min(offsets[topic], first)
        return PositionMark(tick.partition, offsets) if offsets else None
