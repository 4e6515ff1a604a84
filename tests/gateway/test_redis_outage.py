"""Fault: Redis stops under traffic and comes back. The gateway keeps answering; nothing is lost.

A private Redis (loopback, its own port) serves the gateway and is stopped
by pid mid-traffic, then started again on the same port. Redis only speeds
up the request path (idempotency, rate limits, breakers), so every sync
request and every event batch must still be answered 200 while it is down,
every ACKed event must be on the broker, the degradation must show in
``/metrics``, and idempotency must work again once Redis is back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from private_servers import PrivateServer
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.processes import free_port
from mediation.rules.ulid import encode_ulid
from mediation.seed import demo_config, new_app_key, seed_app
from mediation.settings import Settings

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
            "--appendonly", "no", "--dir", str(directory)]  # fmt: skip
    return PrivateServer(argv, ready, "Redis"), url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[PrivateServer, str]]:
    server, url = _redis_server(tmp_path)
    server.start()
    try:
        yield server, url
    finally:
        server.stop()


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
    assert first.content == second.content  # idempotency is back with Redis
    assert down_s < 20  # Redis timeouts are short: the outage did not stall requests
