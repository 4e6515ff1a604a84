"""The cluster clock: the slowest worker process's watermark, shared through the real Redis."""

from __future__ import annotations

import uuid

import pytest
import redis

from dataflows.cluster_clock import ClusterWatermark
from dataflows.inflight import InFlight
from mediation.settings import Settings

pytestmark = pytest.mark.integration


class _Local:
    def __init__(self, now: int):
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_each_process_closes_on_the_minimum_and_holds_while_one_is_missing(
    services: Settings,
) -> None:
    namespace = f"t{uuid.uuid4().hex[:8]}."
    fast, slow = _Local(5_000), _Local(1_000)
    first = ClusterWatermark(fast, services.redis_url, namespace, 0, 2)
    second = ClusterWatermark(slow, services.redis_url, namespace, 1, 2)

    first.sync_once()
    assert first.now_ms() == 0  # the second process has not spoken yet: hold

    second.sync_once()
    first.sync_once()
    assert first.now_ms() == second.now_ms() == 1_000  # the slowest, everywhere

    slow.now = 9_000
    second.sync_once()
    first.sync_once()
    assert first.now_ms() == 5_000  # never ahead of its own watermark either


def test_records_in_flight_are_summed_over_the_cluster(services: Settings) -> None:
    """A record decoded by one process and applied by another counts on both sides."""
    namespace = f"t{uuid.uuid4().hex[:8]}."
    reader, owner = InFlight(), InFlight()
    first = ClusterWatermark(_Local(0), services.redis_url, namespace, 0, 2, in_flight=reader)
    second = ClusterWatermark(_Local(0), services.redis_url, namespace, 1, 2, in_flight=owner)
    first.sync_once()
    assert first.flight() is None  # the other process is unknown: wait

    reader.sent(10)  # the first process reads 10 records; the second owns 4 of them
    reader.applied(6)
    second.sync_once()
    first.sync_once()
    assert first.flight() == (10, 6)

    owner.applied(4)
    second.sync_once()
    first.sync_once()
    assert first.flight() == (10, 10)
    reader.sent(1)  # its own counts are read fresh
    assert first.flight() == (11, 10)


def test_a_process_publishing_no_counters_keeps_the_cluster_waiting(services: Settings) -> None:
    namespace = f"t{uuid.uuid4().hex[:8]}."
    first = ClusterWatermark(_Local(5_000), services.redis_url, namespace, 0, 2)
    redis.Redis.from_url(services.redis_url).set(f"{namespace}worker-watermark:1", 4_000, px=5_000)
    first.sync_once()
    assert first.now_ms() == 4_000
    assert first.flight() is None
