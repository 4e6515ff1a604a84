"""Circuit breakers: the worker's outcome counters in Redis steer the waterfall."""

from __future__ import annotations

import time

import pytest
import redis
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.rules.breaker import breaker_field
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app
from sinks.breakers import RedisBreakerSink, SourceOutcome, breaker_key

pytestmark = pytest.mark.integration


def _minute() -> int:
    return int(time.time() * 1000) // 60_000


def test_worker_outcomes_land_as_counters_per_app_source_and_minute(settings: Settings) -> None:
    minute = _minute()
    partition = RedisBreakerSink(settings.redis_url, settings.topic_prefix).build("b", 0, 1)
    partition.write_batch(
        [SourceOutcome("app", "net_a", minute, True, 1)] * 3
        + [SourceOutcome("app", "net_a", minute, False, 1)]
    )
    partition.close()
    client = redis.Redis.from_url(settings.redis_url)
    stored = client.hgetall(breaker_key(settings.topic_prefix, "app"))
    ttl = client.ttl(breaker_key(settings.topic_prefix, "app"))
    client.close()
    assert stored == {
        breaker_field("net_a", minute, "a").encode(): b"4",
        breaker_field("net_a", minute, "f").encode(): b"3",
    }
    assert 0 < ttl <= 15 * 60


def test_failing_source_is_skipped_while_its_breaker_is_open(settings: Settings) -> None:
    key = new_app_key()
    seed_app(settings.database_url, "brk", demo_config(), key)
    client = redis.Redis.from_url(settings.redis_url)
    client.hset(
        breaker_key(settings.topic_prefix, "brk"),
        mapping={
            breaker_field("net_alpha", _minute(), "a"): 40,
            breaker_field("net_alpha", _minute(), "f"): 39,
        },
    )
    client.close()
    body = {
        "placement_id": "interstitial_main",
        "device_id": "d",
        "ts_ms": int(time.time() * 1000),
        "context": {"country": "US"},
    }
    with TestClient(create_app(settings)) as gateway:
        assert gateway.app.state.ctx.breakers.open_sources("brk") == {"net_alpha"}  # type: ignore[attr-defined]
        sources = [
            [
                e["source_id"]
                for e in gateway.post("/v1/requests", json=body, headers={"X-App-Key": key}).json()[
                    "delivery"
                ]["waterfall"]
            ]
            for _ in range(40)
        ]
        metrics = gateway.get("/metrics").text
    with_alpha = sum("net_alpha" in s for s in sources)
    assert with_alpha <= 10  # only the probing trickle (5% expected) still tries it
    assert all(s[:1] != ["net_alpha"] or len(s) == 3 for s in sources)
    assert 'mediation_breaker_open{app_id="brk",source_id="net_alpha"} 1.0' in metrics
