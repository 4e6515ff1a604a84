"""The per-process memory of unconfirmed sends (``gateway/resends.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gateway.producer import Delivery, ProduceFailedError, ProduceTimeoutError
from gateway.resends import UnconfirmedSends

RAW = {"event_id": "e1", "opportunity_key": "01H0000000000000000000000A", "type": "loaded"}


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _settle(loop: asyncio.AbstractEventLoop, delivery: Delivery, error: object = None) -> None:
    for _ in range(delivery.remaining):
        delivery.on_delivery(error, None)  # type: ignore[arg-type]
    loop.run_until_complete(asyncio.sleep(0))  # run the hand-over to the loop


def test_a_resend_reuses_the_pending_delivery_and_is_acked_once_it_lands(loop):
    sends = UnconfirmedSends()
    delivery = Delivery(loop, 1)
    sends.remember("app", [dict(RAW)], delivery, now_ms=0)
    assert sends.earlier_delivery("app", "e1", dict(RAW), now_ms=10) is delivery

    async def resend() -> None:
        await delivery.wait(1.0)

    task = loop.create_task(resend())
    loop.run_until_complete(asyncio.sleep(0))
    _settle(loop, delivery)
    loop.run_until_complete(task)
    assert delivery.confirmed is True
    # Confirmed deliveries are still matched: a further resend is no new copy.
    assert sends.earlier_delivery("app", "e1", dict(RAW), now_ms=20) is delivery


def test_a_refused_delivery_is_not_reused(loop):
    sends = UnconfirmedSends()
    delivery = Delivery(loop, 2)
    sends.remember("app", [RAW], delivery, now_ms=0)
    _settle(loop, delivery, error="broker down")
    assert delivery.confirmed is False
    assert sends.earlier_delivery("app", "e1", RAW, now_ms=1) is None
    with pytest.raises(ProduceFailedError):
        loop.run_until_complete(delivery.wait(0.1))


def test_other_content_other_app_or_expiry_produce_anew(loop):
    sends = UnconfirmedSends(ttl_ms=100)
    delivery = Delivery(loop, 1)
    sends.remember("app", [RAW], delivery, now_ms=0)
    assert sends.earlier_delivery("app", "e1", {**RAW, "type": "impression"}, now_ms=1) is None
    assert sends.earlier_delivery("other_app", "e1", RAW, now_ms=1) is None
    assert sends.earlier_delivery("app", "e2", RAW, now_ms=1) is None
    assert sends.earlier_delivery("app", "e1", RAW, now_ms=101) is None


def test_waiting_on_a_still_pending_delivery_times_out(loop):
    delivery = Delivery(loop, 1)
    with pytest.raises(ProduceTimeoutError) as info:
        loop.run_until_complete(delivery.wait(0.05))
    assert info.value.delivery is delivery


def test_memory_is_bounded_oldest_first_and_expired_entries_go(loop):
    sends = UnconfirmedSends(ttl_ms=1_000, max_events=3)
    delivery = Delivery(loop, 5)
    sends.remember("app", [{**RAW, "event_id": f"e{i}"} for i in range(5)], delivery, now_ms=0)
    assert len(sends) == 3
    assert sends.earlier_delivery("app", "e0", {**RAW, "event_id": "e0"}, now_ms=1) is None
    e4 = {**RAW, "event_id": "e4"}
    assert sends.earlier_delivery("app", "e4", e4, now_ms=1) is delivery
    sends.remember("app", [{**RAW, "event_id": "late"}], Delivery(loop, 1), now_ms=5_000)
    assert len(sends) == 1
