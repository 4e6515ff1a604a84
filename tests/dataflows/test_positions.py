"""Safe restart offsets: the oldest record a partition's open state holds (no services)."""

from __future__ import annotations

import dataclasses
import os

from builders import T0, opportunity
from builders import event as _event

from dataflows.closing import ClosingBucket, bucket_of
from dataflows.positions import OpenBuckets, PartitionProgress, PositionTick
from mediation.rules.model import ClosedOpportunity, Policy
from mediation.rules.ulid import encode_ulid
from sinks.positions import PositionMark


class _Clock:
    def __init__(self, now: int):
        self.now = now

    def __call__(self, _partition: int | None = None) -> int:
        return self.now


def _bucket(clock: _Clock, buckets: OpenBuckets, progress: PartitionProgress) -> ClosingBucket:
    policy = Policy(allowed_lateness_ms=1_000, tombstone_ttl_ms=60_000)
    return ClosingBucket(None, policy, clock, False, clock, progress=progress, open_buckets=buckets)


def _at(record, offset: int, partition: int = 3):  # type: ignore[no-untyped-def]
    return dataclasses.replace(record, source_partition=partition, source_offset=offset)


def test_a_mark_holds_the_first_offsets_of_open_buckets_until_they_close() -> None:
    clock, progress = _Clock(T0), PartitionProgress()
    buckets = OpenBuckets("opps", "events", progress)
    key = encode_ulid(T0, os.urandom(10))
    bucket = _bucket(clock, buckets, progress)
    progress.sent(3, 2)
    bucket.on_batch([_at(opportunity(key), 40), _at(_event(key, "e1", "loaded", 100), 70)])
    tick = PositionTick(3, sent=2, next_offsets={"opps": 90, "events": 95})
    assert buckets.mark(tick) == PositionMark(3, {"opps": 40, "events": 70})
    clock.now = T0 + 60_000
    (closed,), _ = bucket.on_notify()
    assert isinstance(closed, ClosedOpportunity)
    # Closed (a tombstone is not open state): nothing holds the partition back.
    assert buckets.mark(tick) == PositionMark(3, {"opps": 90, "events": 95})


def test_no_mark_while_records_sent_before_the_tick_are_on_their_way() -> None:
    progress = PartitionProgress()
    buckets = OpenBuckets("opps", "events", progress)
    progress.sent(3, 5)
    progress.applied(3, 4)
    assert buckets.mark(PositionTick(3, sent=5, next_offsets={"opps": 9})) is None
    progress.applied(3, 1)
    assert buckets.mark(PositionTick(3, sent=5, next_offsets={"opps": 9})) is not None


def test_a_tick_reaching_the_closing_step_comes_out_as_a_mark_and_keeps_no_state() -> None:
    clock, progress = _Clock(T0), PartitionProgress()
    buckets = OpenBuckets("opps", "events", progress)
    tick = PositionTick(1, sent=0, next_offsets={"opps": 7, "events": 8})
    marks, keep = _bucket(clock, buckets, progress).on_batch([tick])
    assert list(marks) == [PositionMark(1, {"opps": 7, "events": 8})]
    assert keep is ClosingBucket.DISCARD


def test_a_bucket_resumed_from_its_snapshot_keeps_its_partition_and_first_offsets() -> None:
    clock, progress = _Clock(T0), PartitionProgress()
    buckets = OpenBuckets("opps", "events", progress)
    key = encode_ulid(T0, os.urandom(10))
    bucket = _bucket(clock, buckets, progress)
    bucket.on_batch([_at(opportunity(key), 12)])
    snapshot = bucket.snapshot()
    assert snapshot[:3] == (3, 12, None)
    fresh = OpenBuckets("opps", "events", progress)
    policy = Policy()
    ClosingBucket(snapshot, policy, clock, False, clock, progress=progress, open_buckets=fresh)
    mark = fresh.mark(PositionTick(3, sent=0, next_offsets={"opps": 50, "events": 60}))
    assert mark == PositionMark(3, {"opps": 12, "events": 60})
    assert bucket_of(key, 3).startswith("3:")
