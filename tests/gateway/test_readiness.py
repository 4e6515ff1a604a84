"""``/readyz`` reports what the gateway can serve, not whether every dependency answers.

Redis only speeds up and coordinates the request path, and the SDK routes
read keys and configs from the in-process catalog, so a gateway whose
Redis or Postgres is down still serves them and must stay in rotation:
ready, degraded, with the reason. Without the broker nothing can be
confirmed: not ready.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from psycopg import sql
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.settings import Settings
from mediation.sim.processes import free_port
from mediation.sim.seed import demo_config, new_app_key, seed_app
from storage.db import connect

pytestmark = pytest.mark.integration


def _nothing_listens() -> str:
    return f"127.0.0.1:{free_port()}"


def test_a_gateway_without_redis_is_ready_but_degraded_and_says_why(settings: Settings) -> None:
    key = new_app_key()
    seed_app(settings.database_url, "noredis", demo_config(), key)
    without_redis = replace(settings, redis_url=f"redis://{_nothing_listens()}/0")
    with TestClient(create_app(without_redis)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "degraded"
        assert body["checks"] == {"postgres": True, "redis": False, "kafka": True}
        assert set(body["degraded"]) == {"redis"}
        assert "SDK routes" in body["degraded"]["redis"]
        # What readiness promises: the SDK routes serve, but for keyed requests.
        now = int(time.time() * 1000)
        request = {"placement_id": "interstitial_main", "device_id": "d1", "ts_ms": now}
        served = client.post("/v1/requests", json=request, headers={"X-App-Key": key})
        assert served.status_code == 200, served.text
        keyed = client.post("/v1/requests", json=request, headers={
            "X-App-Key": key, "Idempotency-Key": "b1c2d3e4-f5a6-4b7c-8d9e"})  # fmt: skip
        assert keyed.status_code == 503, keyed.text
        code = keyed.json()["error"]["code"]
        assert code in body["degraded"]["redis"]  # the reason names what it answers


def test_a_gateway_with_every_dependency_is_ready(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "checks": {"postgres": True, "redis": True, "kafka": True},
        "degraded": {},
        "failing": {},
    }


def test_a_gateway_without_the_broker_is_not_ready(settings: Settings) -> None:
    without_kafka = replace(settings, kafka_bootstrap_servers=_nothing_listens())
    with TestClient(create_app(without_kafka)) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503, ready.text
    body = ready.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["kafka"] is False
    assert set(body["failing"]) == {"kafka"}


def test_a_gateway_whose_postgres_went_away_serves_from_its_catalog_and_stays_ready(
    settings: Settings, database_url: str
) -> None:
    key = new_app_key()
    seed_app(settings.database_url, "nopg", demo_config(), key)
    name = database_url.rsplit("/", 1)[1]
    now = int(time.time() * 1000)
    request = {"placement_id": "interstitial_main", "device_id": "d1", "ts_ms": now}
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        # The database refuses every connection of the gateway from now on.
        admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
        with connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                    sql.Identifier(name)
                )
            )
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        try:
            ready = client.get("/readyz")
            served = client.post("/v1/requests", json=request, headers={"X-App-Key": key})
        finally:
            with connect(admin_url, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                        sql.Identifier(name)
                    )
                )
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["checks"]["postgres"] is False
    assert set(body["degraded"]) == {"postgres"}
    assert served.status_code == 200, served.text  # what readiness promises
