"""Idempotency-Key on the sync path, with the real Redis and broker."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from dataclasses import replace

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from confluent_kafka import Consumer, TopicPartition
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.idempotency import Claim, IdempotencyStore
from mediation.settings import Settings
from mediation.sim.processes import free_port
from mediation.sim.seed import demo_config, new_app_key, seed_app

pytestmark = pytest.mark.integration


@pytest.fixture
def keys(settings: Settings) -> dict[str, str]:
    first, second = new_app_key(), new_app_key()
    seed_app(settings.database_url, "app_one", demo_config(), first)
    seed_app(settings.database_url, "app_two", demo_config(), second)
    return {"app_one": first, "app_two": second}


@pytest.fixture
def client(settings: Settings, keys: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _body(device: str = "device-1") -> dict[str, object]:
    return {
        "placement_id": "interstitial_main",
        "device_id": device,
        "ts_ms": 1_760_000_000_000,
        "context": {"country": "US"},
    }


def _post(client: TestClient, app_key: str, key: str | None, body: dict[str, object]):  # type: ignore[no-untyped-def]
    headers = {"X-App-Key": app_key}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/v1/requests", json=body, headers=headers)


def _count_opportunities(settings: Settings) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": "idem-test",
            "fetch.wait.max.ms": 10,
        }
    )
    topic = settings.topics.opportunities
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.kafka_partitions)])
    count, deadline = 0, time.monotonic() + 3
    while time.monotonic() < deadline:
        count += sum(1 for m in consumer.consume(100, 0.2) if not m.error())
    consumer.close()
    return count


def test_same_key_and_body_replays_the_same_bytes_without_a_second_opportunity(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    first = _post(client, keys["app_one"], "7d1f0c1e-aa4b-4c55-9d1e-0b6b2b8d9f10", _body())
    again = _post(client, keys["app_one"], "7d1f0c1e-aa4b-4c55-9d1e-0b6b2b8d9f10", _body())
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    assert again.headers["idempotent-replayed"] == "true"
    assert _count_opportunities(settings) == 1


def test_same_key_with_another_body_is_refused(client: TestClient, keys: dict[str, str]) -> None:
    key = "0f4b9a7e-5c1d-4e2a-8b3f-6d7c8e9fa0b1"
    assert _post(client, keys["app_one"], key, _body("device-1")).status_code == 200
    response = _post(client, keys["app_one"], key, _body("device-2"))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_same_key_still_in_flight_answers_409(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    key = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
    wire = orjson.dumps(_body())
    # Another gateway process holds the lease for this key and body.
    assert asyncio.run(_claim("app_one", key, wire, settings)) == "proceed"
    response = client.post(
        "/v1/requests", content=wire, headers={"X-App-Key": keys["app_one"], "Idempotency-Key": key}
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "request_in_flight"


async def _claim(app_id: str, key: str, body: bytes, settings: Settings) -> str:
    client = aioredis.from_url(settings.redis_url)
    try:
        claim = await _store(client, settings).claim(app_id, key, body)
        if claim.lease is not None:
            claim.lease.abandon()  # the other process is still working: the lease stays
        return claim.kind
    finally:
        await client.aclose()


def test_keys_are_scoped_per_app(client: TestClient, keys: dict[str, str]) -> None:
    key = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
    one = _post(client, keys["app_one"], key, _body())
    two = _post(client, keys["app_two"], key, _body())
    assert one.status_code == two.status_code == 200
    assert one.json()["opportunity_key"] != two.json()["opportunity_key"]


@pytest.mark.parametrize("key", ["aaaaaaaaaaaa", "short", "x" * 256, "has space in it 123"])
def test_bad_keys_are_refused(client: TestClient, keys: dict[str, str], key: str) -> None:
    response = _post(client, keys["app_one"], key, _body())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"


def test_failed_request_releases_the_key_for_the_retry(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    key = "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"
    bad = _body()
    bad["placement_id"] = "nowhere"
    assert _post(client, keys["app_one"], key, bad).status_code == 422
    direct = redis.Redis.from_url(settings.redis_url)
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert direct.get(f"{settings.topic_prefix}idem:app_one:{digest}") is None
    direct.close()


def test_a_keyed_request_gets_503_when_redis_is_down_and_an_unkeyed_one_is_served(
    settings: Settings, keys: dict[str, str]
) -> None:
    unreachable = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(unreachable)) as down_client:
        keyed = _post(down_client, keys["app_one"], "c3d4e5f6-a7b8-4c9d-0e1f-2a3b4c5d6e7f", _body())
        unkeyed = _post(down_client, keys["app_one"], None, _body())
        metrics = down_client.get("/metrics").text
    # Never served unguarded: the retry may not mint a second opportunity.
    assert keyed.status_code == 503
    assert keyed.headers["retry-after"] == "1"
    assert keyed.json()["error"]["code"] == "idempotency_unavailable"
    assert unkeyed.status_code == 200
    assert "mediation_idempotency_unavailable_total 1.0" in metrics


def test_replay_wins_even_after_the_config_changed(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    key = "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70"
    first = _post(client, keys["app_one"], key, _body())
    assert first.status_code == 200
    without_placement = demo_config()
    del without_placement["placements"]["interstitial_main"]
    seed_app(settings.database_url, "app_one", without_placement)
    client.portal.call(client.app.state.ctx.catalog.refresh)  # type: ignore[attr-defined, union-attr]
    assert (
        _post(client, keys["app_one"], "e5f6a7b8-c9d0-4e1f-9a2b-3c4d5e6f7a81", _body()).status_code
        == 422
    )  # a new request sees the new config
    again = _post(client, keys["app_one"], key, _body())
    assert again.status_code == 200 and again.content == first.content


def _store(client: aioredis.Redis, settings: Settings, lease_ms: int = 3000) -> IdempotencyStore:
    return IdempotencyStore(client, settings.topic_prefix, lease_ms=lease_ms, timeout_ms=250)


def test_a_stale_holder_cannot_release_the_next_holders_lease(settings: Settings) -> None:
    async def scenario() -> str:
        client = aioredis.from_url(settings.redis_url)
        store = _store(client, settings)
        key = "f6a7b8c9-d0e1-4f2a-8b3c"
        first = await store.claim("app", key, b"{}")
        # The first holder stalls past its lease; a retry takes over.
        await client.delete(store._redis_key("app", key))
        second = await store.claim("app", key, b"{}")
        assert first.lease is not None and second.lease is not None
        await first.lease.release()
        third = await store.claim("app", key, b"{}")
        await second.lease.release()
        await client.aclose()
        return third.kind

    assert asyncio.run(scenario()) == "in_flight"


def test_a_holder_that_lost_its_lease_to_a_retry_cannot_record_its_answer(
    settings: Settings,
) -> None:
    """The first holder's lease expired while it waited; the retry took over and answered.

    Only one answer may be recorded (and so served): the retry's.
    """

    async def scenario() -> tuple[bool, bool, Claim]:
        client = aioredis.from_url(settings.redis_url)
        store = _store(client, settings)
        key = "0a1b2c3d-4e5f-4a6b-8c7d"
        first = await store.claim("app", key, b"{}")
        await client.delete(store._redis_key("app", key))  # the lease expired
        second = await store.claim("app", key, b"{}")
        assert first.lease is not None and second.lease is not None
        recorded_second = await second.lease.finish(b'{"answer":"second"}')
        recorded_first = await first.lease.finish(b'{"answer":"first"}')
        replay = await store.claim("app", key, b"{}")
        await client.aclose()
        return recorded_first, recorded_second, replay

    recorded_first, recorded_second, replay = asyncio.run(scenario())
    assert (recorded_first, recorded_second) == (False, True)
    assert replay.kind == "replay" and replay.response == b'{"answer":"second"}'


def test_a_holder_whose_lease_lapsed_unclaimed_still_records_its_answer(
    settings: Settings,
) -> None:
    async def scenario() -> tuple[bool, Claim]:
        client = aioredis.from_url(settings.redis_url)
        store = _store(client, settings)
        key = "1b2c3d4e-5f6a-4b7c-9d8e"
        first = await store.claim("app", key, b"{}")
        await client.delete(store._redis_key("app", key))  # lapsed; nobody else claimed it
        assert first.lease is not None
        recorded = await first.lease.finish(b'{"answer":"first"}')
        replay = await store.claim("app", key, b"{}")
        await client.aclose()
        return recorded, replay

    recorded, replay = asyncio.run(scenario())
    assert recorded
    assert replay.kind == "replay" and replay.response == b'{"answer":"first"}'


def test_a_lease_is_renewed_while_its_request_lives_and_lapses_once_it_died(
    settings: Settings,
) -> None:
    """A live request keeps its key for longer than one lease; a dead one frees it within one."""

    async def scenario() -> tuple[str, str]:
        client = aioredis.from_url(settings.redis_url)
        store = _store(client, settings, lease_ms=1200)
        key = "2c3d4e5f-6a7b-4c8d-8e9f"
        live = await store.claim("app", key, b"{}")
        assert live.lease is not None
        await asyncio.sleep(3)  # over two leases long: only renewals keep it
        while_alive = (await store.claim("app", key, b"{}")).kind
        live.lease.abandon()  # what a SIGKILL does: no release, no more renewals
        await asyncio.sleep(3)
        after_death = await store.claim("app", key, b"{}")
        if after_death.lease is not None:
            await after_death.lease.release()
        await client.aclose()
        return while_alive, after_death.kind

    assert asyncio.run(scenario()) == ("in_flight", "proceed")
