"""The OpenAPI document against the gateway's behaviour, with schemathesis (every operation).

Schemathesis draws valid and invalid requests from ``/openapi.json`` and
checks each answer: its status is one the operation documents, its
content type is the documented one, and its body matches the documented
schema. Bounded and derandomized, so that CI sees the same examples every
run. Every operation runs against an app of its own (a fresh database per
test); the key operations (create, revoke) are pointed at a throwaway app,
so they never revoke the key the SDK operations are called with.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.openapi import openapi_document
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-schemathesis-0123"
APP = "st"
THROWAWAY_APP = "st-throwaway"
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


class _Gateway:
    """The ASGI app under test, and the write key of its app."""

    def __init__(self, app: Any, key: str):
        self.app, self.key = app, key


@pytest.fixture
def gateway(settings: Settings) -> Iterator[_Gateway]:
    key = new_app_key()
    seed_app(settings.database_url, APP, demo_config(), key)
    seed_app(settings.database_url, THROWAWAY_APP, demo_config(), new_app_key())
    app = create_app(replace(settings, admin_token=TOKEN, replay_requests_per_s=1000))
    yield _Gateway(app, key)
    asgi.shutdown_lifespans()  # schemathesis started the app's lifespan on its first call


# The document as the gateway serves it (both roles); the first test checks they agree.
DOCUMENT = openapi_document(frozenset({"api", "ingest"}))
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_gateway_serves_this_document(gateway: _Gateway) -> None:
    with TestClient(gateway.app) as client:
        assert client.get("/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case: Any, gateway: _Gateway) -> None:
    path = case.operation.path
    if path.startswith("/v1/admin/apps/{app_id}/keys"):
        case.path_parameters = {**(case.path_parameters or {}), "app_id": THROWAWAY_APP}
    if path.startswith(("/v1/admin", "/v1/replay")):
        credentials = {"Authorization": f"Bearer {TOKEN}"}
    else:
        credentials = {"X-App-Key": gateway.key}
    case.call_and_validate(app=gateway.app, headers=credentials, checks=CHECKS)


def test_an_event_without_a_string_id_is_rejected_as_documented(gateway: _Gateway) -> None:
    # Its rejection carries event_id null: the document must allow it.
    case = schema["/v1/events"]["POST"].Case(
        body={
            "sent_at": 1_760_000_000_000,
            "sdk": "st/1",
            "events": [{"event_id": 7, "type": "loaded"}],
        },
        media_type="application/json",
    )
    response = case.call_and_validate(
        app=gateway.app, headers={"X-App-Key": gateway.key}, checks=CHECKS
    )
    assert response.status_code == 200, response.text
    assert response.json()["rejected"][0]["event_id"] is None


def test_every_operation_has_an_id_and_every_answer_a_schema() -> None:
    ids = []
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            ids.append(operation["operationId"])
            for status, response in operation["responses"].items():
                if status != "304":
                    (content,) = response["content"].values()
                    assert "schema" in content, (method, path, status)
    assert len(ids) == len(set(ids))
