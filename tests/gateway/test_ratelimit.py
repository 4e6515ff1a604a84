"""Per-app rate limits: fleet-wide through Redis, local when Redis is down."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.ratelimit import RateLimiter
from mediation.settings import Settings
from mediation.sim.processes import free_port
from mediation.sim.seed import demo_config, new_app_key, seed_app

pytestmark = pytest.mark.integration


def _degraded() -> Counter:
    return Counter("degraded", "test", registry=CollectorRegistry())


def test_two_processes_share_one_limit_through_redis(settings: Settings) -> None:
    async def scenario() -> tuple[int, int]:
        namespace = f"rl-{uuid.uuid4().hex}:"
        first_client = aioredis.from_url(settings.redis_url)
        second_client = aioredis.from_url(settings.redis_url)
        first = RateLimiter(first_client, namespace, _degraded(), clock_s=lambda: 1_000.2)
        second = RateLimiter(second_client, namespace, _degraded(), clock_s=lambda: 1_000.7)
        admitted_first = sum(first.allow("app", "requests", 10) for _ in range(6))
        await first.flush()
        # The second process learns the fleet total on its first flush...
        admitted_second = sum(second.allow("app", "requests", 10) for _ in range(1))
        await second.flush()
        # ...and from then on admits only what is left of the shared limit.
        admitted_second += sum(second.allow("app", "requests", 10) for _ in range(10))
        await first_client.aclose()
        await second_client.aclose()
        return admitted_first, admitted_second

    assert asyncio.run(scenario()) == (6, 4)


def test_limit_holds_across_flushes(settings: Settings) -> None:
    async def scenario() -> int:
        client = aioredis.from_url(settings.redis_url)
        limiter = RateLimiter(
            client, f"rl-{uuid.uuid4().hex}:", _degraded(), clock_s=lambda: 2_000.5
        )
        allowed = 0
        for _ in range(5):
            allowed += sum(limiter.allow("app", "requests", 7) for _ in range(4))
            await limiter.flush()
        await client.aclose()
        return allowed

    assert asyncio.run(scenario()) == 7


def test_limit_is_enforced_locally_when_redis_is_down() -> None:
    async def scenario() -> tuple[int, float]:
        client = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
        degraded = _degraded()
        limiter = RateLimiter(client, "x:", degraded, clock_s=lambda: 3_000.0)
        allowed = sum(limiter.allow("app", "requests", 3) for _ in range(2))
        await limiter.flush()
        allowed += sum(limiter.allow("app", "requests", 3) for _ in range(5))
        await client.aclose()
        return allowed, degraded._value.get()  # type: ignore[attr-defined]

    allowed, degraded = asyncio.run(scenario())
    assert allowed == 3
    assert degraded == 1


def test_over_limit_calls_get_429_with_retry_after(settings: Settings) -> None:
    key = new_app_key()
    config = demo_config()
    config["rate_limits"] = {"requests_per_s": 3, "event_batches_per_s": 3}
    seed_app(settings.database_url, "limited", config, key)
    body = {"placement_id": "interstitial_main", "device_id": "d", "ts_ms": int(time.time() * 1000)}
    with TestClient(create_app(settings)) as client:
        statuses = [
            client.post("/v1/requests", json=body, headers={"X-App-Key": key}) for _ in range(8)
        ]
    codes = [r.status_code for r in statuses]
    assert codes.count(200) <= 3 * 2  # at most the limit in each second touched
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, codes
    assert limited[0].headers["retry-after"] == "1"
    assert limited[0].json()["error"]["code"] == "rate_limited"


def test_one_apps_limit_never_spends_another_apps(settings: Settings) -> None:
    keys = {}
    for app in ("noisy", "quiet"):
        keys[app] = new_app_key()
        config = demo_config()
        config["rate_limits"] = {"requests_per_s": 3, "event_batches_per_s": 3}
        seed_app(settings.database_url, app, config, keys[app])
    body = {"placement_id": "interstitial_main", "device_id": "d", "ts_ms": int(time.time() * 1000)}
    with TestClient(create_app(settings)) as client:

        def send(app: str) -> int:
            answer = client.post("/v1/requests", json=body, headers={"X-App-Key": keys[app]})
            return answer.status_code

        noisy = [send("noisy") for _ in range(12)]
        quiet = [send("quiet") for _ in range(2)]
    assert 429 in noisy
    assert quiet == [200, 200]
