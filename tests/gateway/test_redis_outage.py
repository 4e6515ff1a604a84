"""Fault: Redis stalls or stops under traffic and comes back. Nothing is lost or served twice.

A private Redis (loopback, its own port) serves the gateway; it is stalled
with ``DEBUG SLEEP`` or stopped by pid mid-traffic, then started again on
the same port. For rate limits and breakers Redis only speeds up the
request path, so every unkeyed sync request and every event batch must
still be answered 200 while it is down and every ACKed event must be on the
broker. A request with an ``Idempotency-Key`` is served at most once per
key, so while the store cannot answer it gets 503 + ``Retry-After`` (never
a 200 the retry could duplicate), and it is served once Redis is back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from private_servers import PrivateServer
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.rules.ulid import encode_ulid
from mediation.settings import Settings
from mediation.sim.processes import free_port
from mediation.sim.seed import demo_config, new_app_key, seed_app

pytestmark = pytest.mark.integration


def _redis_server(directory: Path) -> tuple[PrivateServer, str]:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"

    def ready() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_timeout=0.2).ping())
        except redis.RedisError:
            return False

    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
            "--appendonly", "no", "--dir", str(directory),
            "--enable-debug-command", "local"]  # fmt: skip
    return PrivateServer(argv, ready, "Redis"), url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[PrivateServer, str]]:
    server, url = _redis_server(tmp_path)
    server.start()
    try:
        yield server, url
    finally:
        server.stop()


def _sync_body(device: str) -> dict[str, object]:
    return {"placement_id": "interstitial_main", "device_id": device,
            "ts_ms": int(time.time() * 1000)}  # fmt: skip


def _events_on_broker(settings: Settings, wanted: set[str]) -> set[str]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "group.id": f"redis-outage-{uuid.uuid4().hex[:6]}"})  # fmt: skip
    topic = settings.topics.events
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.kafka_partitions)])
    seen: set[str] = set()
    deadline = time.monotonic() + 15
    while not wanted <= seen and time.monotonic() < deadline:
        for message in consumer.consume(200, 0.2):
            if not message.error():
                seen.add(str(orjson.loads(message.value())["event_id"]))
    consumer.close()
    return seen


def test_the_gateway_serves_through_a_redis_outage_and_loses_nothing(
    settings: Settings, private_redis: tuple[PrivateServer, str]
) -> None:
    server, redis_url = private_redis
    key = new_app_key()
    seed_app(settings.database_url, "redisfault", demo_config(), key)
    headers = {"X-App-Key": key}
    accepted: set[str] = set()
    statuses: list[int] = []

    def traffic(phase: str, n: int) -> None:
        for i in range(n):
            now = int(time.time() * 1000)
            request = {"placement_id": "interstitial_main", "device_id": f"{phase}-{i}",
                       "ts_ms": now}  # fmt: skip
            sync = client.post("/v1/requests", headers=headers, json=request)
            statuses.append(sync.status_code)
            opportunity = sync.json().get("opportunity_key") or encode_ulid(now, bytes(10))
            event_id = f"{phase}-{i}-{uuid.uuid4().hex[:6]}"
            batch = {"sdk": "t/1", "sent_at": now, "events": [
                {"event_id": event_id, "opportunity_key": opportunity, "type": "loaded",
                 "ts": now}]}  # fmt: skip
            answer = client.post("/v1/events", headers=headers, json=batch)
            statuses.append(answer.status_code)
            if answer.status_code == 200 and answer.json()["accepted"] == 1:
                accepted.add(event_id)

    app = create_app(replace(settings, redis_url=redis_url))
    with TestClient(app) as client:
        traffic("before", 10)
        server.stop()
        started = time.monotonic()
        traffic("down", 20)
        down_s = time.monotonic() - started
        keyed_down = client.post("/v1/requests", json=_sync_body("keyed-down"), headers={
            "Idempotency-Key": f"idem-{uuid.uuid4().hex}", **headers})  # fmt: skip
        metrics = client.get("/metrics").text
        server.start()  # the same port: the client reconnects by itself
        time.sleep(0.5)
        traffic("after", 10)
        idempotent = {"Idempotency-Key": f"idem-{uuid.uuid4().hex}", **headers}
        body = {"placement_id": "interstitial_main", "device_id": "again",
                "ts_ms": int(time.time() * 1000)}  # fmt: skip
        first = client.post("/v1/requests", headers=idempotent, json=body)
        second = client.post("/v1/requests", headers=idempotent, json=body)

    assert set(statuses) == {200}, statuses  # answered throughout
    assert len(accepted) == 40
    assert _events_on_broker(settings, accepted) >= accepted  # every ACKed event is there
    assert "mediation_ratelimit_degraded_total" in metrics
    degraded = [line for line in metrics.splitlines()
                if line.startswith("mediation_ratelimit_degraded_total")]  # fmt: skip
    assert degraded and float(degraded[0].split()[-1]) > 0  # the outage is visible
    # A keyed request is never served unguarded: the SDK retries it later.
    assert keyed_down.status_code == 503 and keyed_down.headers["retry-after"] == "1"
    assert keyed_down.json()["error"]["code"] == "idempotency_unavailable"
    assert first.status_code == 200 and first.content == second.content  # back with Redis
    assert down_s < 20  # Redis timeouts are short: the outage did not stall requests


def _opportunities_on_broker(settings: Settings) -> list[str]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "group.id": f"redis-stall-{uuid.uuid4().hex[:6]}"})  # fmt: skip
    topic = settings.topics.opportunities
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.kafka_partitions)])
    keys: list[str] = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        keys += [m.key().decode() for m in consumer.consume(200, 0.2) if not m.error()]
    consumer.close()
    return keys


def _wait_until_stalled(redis_url: str) -> None:
    """Return once Redis is inside its DEBUG SLEEP: a PING no longer answers at once."""
    deadline = time.monotonic() + 30
    probe = redis.Redis.from_url(redis_url, socket_timeout=0.05)
    try:
        while time.monotonic() < deadline:
            try:
                probe.ping()
            except redis.TimeoutError:
                return
            time.sleep(0.01)
        raise AssertionError("Redis never stalled")
    finally:
        probe.close()


STALL_S = 2  # much longer than the idempotency store's time budget (250 ms)


def test_a_redis_stall_serves_a_keyed_request_at_most_once(
    settings: Settings, private_redis: tuple[PrivateServer, str]
) -> None:
    """20 concurrent requests with one key and one body while Redis sleeps, then retries.

    None of them may mint an opportunity the others (or a retry) do not
    share: they get 503 + Retry-After (or 409 once a lease exists); after the
    stall the SDK's retries get one 200, then that answer replayed. Requests
    without the header are served throughout.
    """
    _server, redis_url = private_redis
    app_key = new_app_key()
    seed_app(settings.database_url, "redisstall", demo_config(), app_key)
    keyed = {"X-App-Key": app_key, "Idempotency-Key": f"idem-{uuid.uuid4().hex}"}
    body = orjson.dumps(_sync_body("stalled-device"))
    stalled = threading.Event()

    def stall() -> None:
        direct = redis.Redis.from_url(redis_url, socket_timeout=STALL_S + 10)
        stalled.set()
        direct.execute_command("DEBUG", "SLEEP", STALL_S)
        direct.close()

    with TestClient(create_app(replace(settings, redis_url=redis_url))) as client:
        warm = client.post("/v1/requests", content=body, headers=keyed | {
            "Idempotency-Key": f"idem-{uuid.uuid4().hex}"})  # fmt: skip
        assert warm.status_code == 200  # the store answers when Redis does
        sleeper = threading.Thread(target=stall)
        sleeper.start()
        stalled.wait()
        _wait_until_stalled(redis_url)
        with ThreadPoolExecutor(20) as pool:
            calls = [pool.submit(client.post, "/v1/requests", content=body, headers=keyed)
                     for _ in range(20)]  # fmt: skip
            during = [call.result() for call in calls]
        unkeyed = client.post("/v1/requests", content=body, headers={"X-App-Key": app_key})
        sleeper.join()
        retries = []
        for _attempt in range(30):  # the SDK honours Retry-After
            answer = client.post("/v1/requests", content=body, headers=keyed)
            retries.append(answer)
            if answer.status_code == 200:
                break
            assert answer.status_code in (409, 503), answer.text
            time.sleep(float(answer.headers["retry-after"]))
        again = client.post("/v1/requests", content=body, headers=keyed)

    statuses = [r.status_code for r in during]
    assert set(statuses) <= {409, 503}, statuses  # none served unguarded
    assert all(r.headers["retry-after"] == "1" for r in during)
    assert unkeyed.status_code == 200  # requests without the header are served
    served = retries[-1]
    assert served.status_code == 200, [r.text for r in retries]
    assert again.status_code == 200 and again.content == served.content
    assert again.headers["idempotent-replayed"] == "true"
    # One opportunity for the key: the warm-up, the unkeyed one and the served one.
    on_broker = _opportunities_on_broker(settings)
    assert sorted(on_broker) == sorted(r.json()["opportunity_key"] for r in (warm, unkeyed, served))


def test_a_redis_slower_than_its_socket_timeout_but_within_the_budget_serves_keyed_requests(
    settings: Settings, private_redis: tuple[PrivateServer, str]
) -> None:
    """``MEDIATION_IDEMPOTENCY_TIMEOUT_MS`` is the keyed request's wait for the store.

    Raised to 10 s, a Redis that stalls 1 s (far longer than the client's
    usual 250 ms socket timeout) still answers within it: the request is
    served, once, and replayed after.
    """
    _server, redis_url = private_redis
    app_key = new_app_key()
    seed_app(settings.database_url, "redisslow", demo_config(), app_key)
    keyed = {"X-App-Key": app_key, "Idempotency-Key": f"idem-{uuid.uuid4().hex}"}
    body = orjson.dumps(_sync_body("slow-store-device"))
    patient = replace(settings, redis_url=redis_url, idempotency_timeout_ms=10_000)
    stalled = threading.Event()

    def stall() -> None:
        direct = redis.Redis.from_url(redis_url, socket_timeout=30)
        stalled.set()
        direct.execute_command("DEBUG", "SLEEP", 1)
        direct.close()

    with TestClient(create_app(patient)) as client:
        sleeper = threading.Thread(target=stall)
        sleeper.start()
        stalled.wait()
        _wait_until_stalled(redis_url)
        during = client.post("/v1/requests", content=body, headers=keyed)
        sleeper.join()
        again = client.post("/v1/requests", content=body, headers=keyed)
    assert during.status_code == 200, during.text
    assert again.status_code == 200 and again.content == during.content
    assert again.headers["idempotent-replayed"] == "true"
