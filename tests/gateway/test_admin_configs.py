"""Admin config and publish routes: validation errors listed, operations created and rolled back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.ops.publish_worker import advance_once
from mediation.rules.publish import CohortHealth
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app
from storage.db import connect

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


class _Quiet:
    def cohort(self, app_id: str, version: int, since_ms: int, until_ms: int) -> CohortHealth:
        return CohortHealth()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    seed_app(settings.database_url, "cfg", demo_config(), new_app_key())
    with TestClient(create_app(replace(settings, admin_token=TOKEN))) as test_client:
        yield test_client


def test_config_routes_need_the_admin_token(client: TestClient) -> None:
    assert client.get("/v1/admin/apps/cfg/configs").status_code == 401
    response = client.post(
        "/v1/admin/apps/cfg/configs", json=demo_config(), headers={"Authorization": "Bearer wrong"}
    )
    assert response.status_code == 401


def test_an_invalid_config_lists_every_problem(client: TestClient) -> None:
    body = demo_config()
    body["grace_ms"] = 0
    body["placements"]["banner_home"]["waterfall"] = []
    response = client.post("/v1/admin/apps/cfg/configs", json=body, headers=ADMIN)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_config"
    assert len(error["details"]["errors"]) == 2
    assert client.post("/v1/admin/apps/cfg/configs", content=b"{", headers=ADMIN).status_code == 400
    assert (
        client.post("/v1/admin/apps/nope/configs", json=demo_config(), headers=ADMIN).status_code
        == 404
    )


def test_publish_and_roll_back_through_the_api(client: TestClient, settings: Settings) -> None:
    created = client.post(
        "/v1/admin/apps/cfg/configs", json=demo_config(grace_ms=5_000), headers=ADMIN
    )
    assert created.status_code == 201 and created.json()["version"] == 2
    again = client.post(
        "/v1/admin/apps/cfg/configs", json=demo_config(grace_ms=5_000), headers=ADMIN
    )
    assert again.status_code == 200 and again.json()["version"] == 2
    versions = client.get("/v1/admin/apps/cfg/configs", headers=ADMIN).json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    assert (
        client.get("/v1/admin/apps/cfg/configs/2", headers=ADMIN).json()["body"]["grace_ms"]
        == 5_000
    )
    assert client.get("/v1/admin/apps/cfg/configs/9", headers=ADMIN).status_code == 404

    bad_plan = client.post(
        "/v1/admin/apps/cfg/publish", json={"version": 2, "plan": [{"percent": 50}]}, headers=ADMIN
    )
    assert bad_plan.status_code == 422
    started = client.post(
        "/v1/admin/apps/cfg/publish",
        json={"version": 2, "plan": [{"percent": 100, "dwell_ms": 0}]},
        headers=ADMIN,
    )
    assert started.status_code == 202, started.text
    operation_id = started.json()["id"]
    assert started.json()["state"] == "pending"
    busy = client.post("/v1/admin/apps/cfg/publish", json={"version": 2}, headers=ADMIN)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "operation_active"

    with connect(settings.database_url, autocommit=True) as conn:
        for _ in range(4):
            advance_once(conn, _Quiet())
    operation = client.get(f"/v1/admin/publish/{operation_id}", headers=ADMIN).json()
    assert operation["state"] == "published"
    assert [t["to"] for t in operation["transitions"]] == [
        "pending",
        "validating",
        "rolling_out",
        "published",
    ]

    no_reason = client.post(f"/v1/admin/publish/{operation_id}/rollback", headers=ADMIN)
    assert no_reason.status_code == 422
    rolled = client.post(
        f"/v1/admin/publish/{operation_id}/rollback", json={"reason": "test"}, headers=ADMIN
    )
    assert rolled.status_code == 202 and rolled.json()["state"] == "rolling_back"
    again_rolled = client.post(
        f"/v1/admin/publish/{operation_id}/rollback", json={"reason": "test"}, headers=ADMIN
    )
    assert again_rolled.status_code == 409
    assert client.get("/v1/admin/publish/999999", headers=ADMIN).status_code == 404
    assert client.get("/v1/admin/publish/x", headers=ADMIN).status_code == 404
