"""Guessing credentials is throttled: failed authentication has a budget per client address.

A real in-process gateway (real Postgres, Redis, broker). One address sends
wrong admin tokens, or unknown write keys, until it is answered 429 with
``Retry-After``; meanwhile a valid credential from another address is
served, and the failures and refusals are counted in ``/metrics``.
Bounded: at most ``ATTEMPTS`` failures per test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app

pytestmark = pytest.mark.integration

ATTEMPTS = 200
TOKEN = "admin-token-for-throttling"
GUESSER, OTHER = ("198.51.100.7", 40000), ("203.0.113.9", 40000)


@pytest.fixture
def gateway(settings: Settings) -> Iterator[tuple[TestClient, TestClient, str]]:
    """Clients from two addresses to one gateway, and a valid write key."""
    key = new_app_key()
    seed_app(settings.database_url, "guessed", demo_config(), key)
    app = create_app(replace(settings, admin_token=TOKEN))
    with TestClient(app, client=GUESSER) as guesser:
        # The same app (its lifespan already ran) seen from another address.
        yield guesser, TestClient(app, client=OTHER), key


def _until_throttled(send: Callable[[], Any]) -> tuple[list[int], Any]:
    statuses: list[int] = []
    for _ in range(ATTEMPTS):
        response = send()
        statuses.append(response.status_code)
        if response.status_code == 429:
            return statuses, response
    return statuses, None


def test_wrong_admin_tokens_from_one_address_are_throttled(
    gateway: tuple[TestClient, TestClient, str],
) -> None:
    guesser, other, _key = gateway
    wrong = {"Authorization": "Bearer not-the-token"}
    statuses, throttled = _until_throttled(
        lambda: guesser.get("/v1/admin/apps/guessed/keys", headers=wrong)
    )
    assert throttled is not None, f"never throttled: {statuses[:5]}..."
    assert set(statuses[:-1]) == {401}
    assert throttled.json()["error"]["code"] == "auth_throttled"
    assert int(throttled.headers["retry-after"]) >= 1
    # Another address with the right token is served.
    served = other.get("/v1/admin/apps/guessed/keys", headers={"Authorization": f"Bearer {TOKEN}"})
    assert served.status_code == 200, served.text
    metrics = other.get("/metrics").text
    assert 'mediation_auth_failures_total{kind="admin_token"}' in metrics
    assert 'mediation_auth_throttled_total{scope="address"}' in metrics


def test_unknown_write_keys_from_one_address_are_throttled(
    gateway: tuple[TestClient, TestClient, str],
) -> None:
    guesser, other, key = gateway
    now = int(time.time() * 1000)
    request = {"placement_id": "interstitial_main", "device_id": "d1", "ts_ms": now}
    statuses, throttled = _until_throttled(
        lambda: guesser.post("/v1/requests", json=request, headers={"X-App-Key": "mk_guess"})
    )
    assert throttled is not None, f"never throttled: {statuses[:5]}..."
    assert set(statuses[:-1]) == {401}
    assert throttled.json()["error"]["code"] == "auth_throttled"
    assert int(throttled.headers["retry-after"]) >= 1
    served = other.post("/v1/requests", json=request, headers={"X-App-Key": key})
    assert served.status_code == 200, served.text
    assert 'mediation_auth_failures_total{kind="app_key"}' in other.get("/metrics").text
