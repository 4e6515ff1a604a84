"""Security: secrets stay out of logs, errors and metrics; SDK keys open no admin route;
injection strings are data; one app never sees another's config."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from httpx import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app
from storage.db import connect

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-security-tests-42"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
INJECTIONS = (
    "x'; DROP TABLE apps; --",
    'x" OR "1"="1',
    "x') OR ('1'='1",
    "x; SELECT pg_sleep(5); --",
    "x\\'; DELETE FROM app_keys; --",
    "${jndi:ldap://example.invalid/a}",
)


@pytest.fixture
def keys(settings: Settings) -> dict[str, str]:
    keys = {"alpha": new_app_key(), "beta": new_app_key()}
    seed_app(settings.database_url, "alpha", demo_config(), keys["alpha"])
    beta = demo_config()
    beta["placements"] = {"beta_only": copy.deepcopy(beta["placements"]["banner_home"])}
    seed_app(settings.database_url, "beta", beta, keys["beta"])
    return keys


@pytest.fixture
def client(settings: Settings, keys: dict[str, str]) -> Iterator[TestClient]:
    app = create_app(
        replace(settings, admin_token=TOKEN, access_log=True, replay_requests_per_s=1000)
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _sync(client: TestClient, key: str, **body: object) -> Response:
    payload = {
        "placement_id": "interstitial_main",
        "device_id": "d",
        "ts_ms": int(time.time() * 1000),
    }
    return client.post("/v1/requests", headers={"X-App-Key": key}, json={**payload, **body})


def test_keys_and_tokens_never_appear_in_logs_errors_or_metrics(
    client: TestClient, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = keys["alpha"]
    wrong_key, wrong_token = key[:-4] + "zzzz", TOKEN[:-4] + "zzzz"
    bodies = []
    for headers in ({"X-App-Key": key}, {"X-App-Key": wrong_key}, {}):
        bodies.append(_sync(client, headers.get("X-App-Key", "")).text)
        bodies.append(client.get("/v1/config", headers=headers).text)
        for events in ([{"bad": 1}], "not a list"):
            response = client.post(
                "/v1/events", headers=headers, json={"sent_at": 1, "events": events}
            )
            bodies.append(response.text)
        bodies.append(client.post("/v1/events", headers=headers, content=b"{oops").text)
    for headers in (ADMIN, {"Authorization": f"Bearer {wrong_token}"}, {"X-App-Key": key}):
        bodies.append(client.get("/v1/admin/apps/alpha/keys", headers=headers).text)
        bodies.append(client.post("/v1/replay", headers=headers, json={"bogus": 1}).text)
    created = client.post("/v1/admin/apps/alpha/keys", headers=ADMIN)
    new_key = created.json()["app_key"]  # shown once, to its creator only
    assert created.headers["cache-control"] == "no-store"
    bodies.append(_sync(client, new_key).text)
    bodies += [client.get("/metrics").text, client.get("/openapi.json").text]
    seen = "\n".join([caplog.text, *bodies])
    assert "mediation.access" in caplog.text  # the access log was on
    for secret in (key, wrong_key, TOKEN, wrong_token, new_key, keys["beta"]):
        assert secret not in seen
        assert secret[8:24] not in seen  # nor a recognisable piece of one


def test_sdk_keys_open_no_admin_publish_or_replay_route(
    client: TestClient, keys: dict[str, str]
) -> None:
    guarded = [
        (method, route.path)
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.path.startswith(("/v1/admin", "/v1/replay"))
        for method in sorted(route.methods or ()) if method != "HEAD"
    ]  # fmt: skip
    assert len(guarded) >= 12
    values = {"app_id": "alpha", "prefix": "x", "version": "1", "operation_id": "1",
              "replay_id": "1"}  # fmt: skip
    for n, (method, path) in enumerate(guarded):
        url = path.format(**values)
        # Each route from its own address: this many failures from one would
        # be throttled as guessing (429 auth_throttled, test_auth_throttling.py).
        probe = TestClient(client.app, client=(f"192.0.2.{n + 1}", 40000))
        for headers in ({"X-App-Key": keys["alpha"]}, {"Authorization": f"Bearer {keys['alpha']}"}):
            response = probe.request(method, url, headers=headers, json={})
            assert response.status_code == 401, (method, url, headers)
            assert response.json()["error"]["code"] == "admin_auth_required"


def test_an_app_sees_only_its_own_config(client: TestClient, keys: dict[str, str]) -> None:
    alpha = client.get("/v1/config", headers={"X-App-Key": keys["alpha"]}).json()
    beta = client.get("/v1/config", headers={"X-App-Key": keys["beta"]}).json()
    assert "beta_only" not in str(alpha) and "interstitial_main" not in str(beta)
    # The app comes from the key, never from the body.
    response = _sync(client, keys["beta"], app_id="alpha")
    assert response.status_code in (404, 422)


def test_injection_strings_are_data_in_every_sql_path(
    client: TestClient, settings: Settings, keys: dict[str, str]
) -> None:
    for text in INJECTIONS:
        # Path parameters reach SQL in the admin routes.
        for path in (f"/v1/admin/apps/{text}/keys", f"/v1/admin/apps/{text}/configs"):
            assert client.get(path, headers=ADMIN).status_code in (200, 404, 422)
        # Free text in bodies: device ids, context values, config names.
        response = _sync(
            client, keys["alpha"], device_id=text, context={"country": "US", "app_version": text}
        )
        assert response.status_code == 200, text
        config = demo_config()
        config["placements"][text] = copy.deepcopy(config["placements"]["banner_home"])
        pushed = client.post("/v1/admin/apps/alpha/configs", headers=ADMIN, json=config)
        assert pushed.status_code in (200, 201), pushed.text
        version = pushed.json()["version"]
        stored = client.get(f"/v1/admin/apps/alpha/configs/{version}", headers=ADMIN).json()
        assert text in stored["body"]["placements"]  # stored verbatim
        # Filters of the replay API.
        replay = client.post(
            "/v1/replay",
            headers=ADMIN,
            json={"from": 0, "to": 1_000, "app_id": text, "placement_id": text},
        )
        assert replay.status_code == 200 and replay.json()["results"] == []
        keyed = client.post("/v1/replay", headers=ADMIN, json={"opportunity_key": text})
        assert keyed.status_code == 422
    with connect(settings.database_url) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM apps), (SELECT count(*) FROM app_keys)"
        ).fetchone()
    assert counts == (2, 2)  # nothing dropped or deleted
