"""Degradation profiles: switched by an operator, applied by the gateway, audited, visible."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.rules.ulid import encode_ulid
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app
from storage.configs import PublishError, switch_degradation
from storage.db import connect

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app_key(settings: Settings) -> str:
    body = demo_config()
    body["degradation_profiles"] = {
        "lite": {
            "max_waterfall_depth": 1,
            "max_timeout_ms": 300,
            "sample_event_types": {"closed": 0.0},
        }
    }
    key = new_app_key()
    seed_app(settings.database_url, "deg", body, key)
    return key


@pytest.fixture
def client(settings: Settings, app_key: str) -> Iterator[TestClient]:
    with TestClient(create_app(replace(settings, admin_token=TOKEN))) as test_client:
        yield test_client


def _waterfall(client: TestClient, app_key: str) -> list[dict[str, object]]:
    response = client.post(
        "/v1/requests",
        headers={"X-App-Key": app_key},
        json={
            "placement_id": "interstitial_main",
            "device_id": "dev-1",
            "ts_ms": int(time.time() * 1000),
            "context": {"country": "US"},
        },
    )
    assert response.status_code == 200, response.text
    return response.json()["delivery"]["waterfall"]  # type: ignore[no-any-return]


def _events(client: TestClient, app_key: str) -> dict[str, object]:
    now = int(time.time() * 1000)
    key = encode_ulid(now, b"\x01" * 10)
    events = [
        {"event_id": f"ev-{kind}", "opportunity_key": key, "type": kind, "ts": now}
        for kind in ("impression", "closed")
    ]
    response = client.post(
        "/v1/events",
        headers={"X-App-Key": app_key},
        json={"sent_at": now, "sdk": "test/1", "events": events},
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_profile_switched_on_shortens_waterfalls_and_samples_events(
    client: TestClient, app_key: str
) -> None:
    assert len(_waterfall(client, app_key)) > 1
    assert _events(client, app_key) == {"accepted": 2, "rejected": []}

    refused = client.post(
        "/v1/admin/apps/deg/degradation", json={"profile": "nope", "reason": "x"}, headers=ADMIN
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "unknown_profile"
    switched = client.post(
        "/v1/admin/apps/deg/degradation", json={"profile": "lite", "reason": "peak"}, headers=ADMIN
    )
    assert switched.status_code == 200 and switched.json()["profile"] == "lite"

    waterfall = _waterfall(client, app_key)
    assert len(waterfall) == 1 and waterfall[0]["timeout_ms"] == 300
    answer = _events(client, app_key)
    assert answer["accepted"] == 1
    assert [r["code"] for r in answer["rejected"]] == ["sampled_out"]  # type: ignore[union-attr]
    metrics = client.get("/metrics").text
    assert 'mediation_degradation_active{app_id="deg",profile="lite"} 1.0' in metrics
    assert 'mediation_events_sampled_out_total{event_type="closed"} 1.0' in metrics

    off = client.post(
        "/v1/admin/apps/deg/degradation", json={"profile": None, "reason": "over"}, headers=ADMIN
    )
    assert off.status_code == 200 and off.json()["profile"] is None
    assert len(_waterfall(client, app_key)) > 1
    assert (
        'mediation_degradation_active{app_id="deg",profile="lite"} 0.0'
        in client.get("/metrics").text
    )


def test_switches_are_audited_and_checked(settings: Settings, app_key: str) -> None:
    with connect(settings.database_url, autocommit=True) as conn:
        with pytest.raises(PublishError) as caught:
            switch_degradation(conn, "nobody", "lite", "t", "x")
        assert caught.value.code == "unknown_app"
        switch_degradation(conn, "deg", "lite", "ops", "peak")
        switch_degradation(conn, "deg", None, "ops", "over")
        rows = conn.execute(
            "SELECT action, before->>'profile', after->>'profile' FROM audit_records "
            "WHERE action LIKE 'config.degradation.%' ORDER BY id"
        ).fetchall()
    assert rows == [
        ("config.degradation.on", None, "lite"),
        ("config.degradation.off", "lite", None),
    ]
