"""The cluster clock: the slowest worker process's watermark, shared through the real Redis."""

from __future__ import annotations

import uuid

import pytest

from dataflows.cluster_clock import ClusterWatermark
from dataflows.inflight import DeliveryLedger
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


def test_markers_applied_by_another_process_are_acknowledged_through_redis(
    services: Settings,
) -> None:
    namespace = f"t{uuid.uuid4().hex[:8]}."
    reader, owner = DeliveryLedger(0), DeliveryLedger(1)
    first = ClusterWatermark(_Local(0), services.redis_url, namespace, 0, 2, ledger=reader)
    second = ClusterWatermark(_Local(0), services.redis_url, namespace, 1, 2, ledger=owner)
    markers = reader.issue(["bucket-a", "bucket-b"])  # one batch, for two buckets
    assert reader.progress() == (1, 0)

    reader.applied(markers[0][1])  # bucket-a lives on the reading process
    owner.applied(markers[1][1])  # bucket-b on the other one
    first.sync_once()
    assert reader.progress() == (1, 0)  # not relayed yet
    second.sync_once()
    first.sync_once()
    assert reader.progress() == (1, 1)
    first.sync_once()  # taken once: nothing is applied twice
    assert reader.progress() == (1, 1)
