"""Admin routes need the admin token; write keys rotate with at most two active."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-tests-0123456789"


@pytest.fixture
def sdk_key(settings: Settings) -> str:
    key = new_app_key()
    seed_app(settings.database_url, "rot", demo_config(), key)
    return key


@pytest.fixture
def client(settings: Settings, sdk_key: str) -> Iterator[TestClient]:
    with TestClient(create_app(replace(settings, admin_token=TOKEN))) as test_client:
        yield test_client


ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _request(client: TestClient, key: str) -> int:
    return client.post(
        "/v1/requests",
        headers={"X-App-Key": key},
        json={
            "placement_id": "interstitial_main",
            "device_id": "d",
            "ts_ms": int(time.time() * 1000),
        },
    ).status_code


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-wrong-token"}])
def test_admin_routes_refuse_missing_or_wrong_tokens_and_sdk_keys(
    client: TestClient, sdk_key: str, headers: dict[str, str]
) -> None:
    for extra in ({}, {"X-App-Key": sdk_key}):
        response = client.get("/v1/admin/apps/rot/keys", headers={**headers, **extra})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "admin_auth_required"


def test_admin_routes_are_closed_without_a_configured_token(
    settings: Settings, sdk_key: str
) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/admin/apps/rot/keys", headers=ADMIN)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "admin_disabled"


def test_rotation_with_two_active_keys(client: TestClient, sdk_key: str) -> None:
    created = client.post("/v1/admin/apps/rot/keys", headers=ADMIN)
    assert created.status_code == 201
    new_key = created.json()["app_key"]
    assert _request(client, new_key) == 200 and _request(client, sdk_key) == 200

    third = client.post("/v1/admin/apps/rot/keys", headers=ADMIN)
    assert third.status_code == 409
    assert third.json()["error"]["code"] == "too_many_active_keys"

    revoked = client.post(f"/v1/admin/apps/rot/keys/{sdk_key[:12]}/revoke", headers=ADMIN)
    assert revoked.status_code == 200
    assert _request(client, sdk_key) == 401
    assert _request(client, new_key) == 200
    listed = client.get("/v1/admin/apps/rot/keys", headers=ADMIN).json()["keys"]
    assert [k["revoked_at"] is None for k in listed] == [False, True]
    assert all(len(k["prefix"]) == 12 for k in listed)
