"""Fuzzing every operation of the HTTP API from its own OpenAPI document.

For each path and method in ``/openapi.json``, hypothesis draws path
parameters, query parameters and a body from the operation's schemas
(valid-looking values), mixed with arbitrary JSON and raw bytes, and sends
them with the right credentials (the admin token for admin routes, a
write key for SDK routes). No answer may be a 5xx other than a 503 with
``Retry-After``, and every error keeps the ``{"error": {code, message}}``
shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.openapi import openapi_document
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-openapi-fuzzing"
DOCUMENT = openapi_document(frozenset({"api", "ingest"}))
OPERATIONS = sorted((path, method) for path, ops in DOCUMENT["paths"].items() for method in ops)
HOSTILE = st.sampled_from(
    ["", " ", "..", "../etc", "%00", "x" * 300, "'; DROP TABLE apps; --", "\u202e", "0", "-1",
     "99999999999999999999", "fuzz", "null"]
)  # fmt: skip
scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30) | HOSTILE
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = DOCUMENT["components"]["schemas"][name]
    return schema


def from_schema(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped by a JSON schema (bounds and patterns loosely kept), for fuzzing."""
    schema = _resolve(schema)
    if depth > 4:
        return scalars
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return st.one_of([from_schema(s, depth + 1) for s in schema[key]])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {name: from_schema(s, depth + 1) for name, s in properties.items() if name in required},
            optional={
                name: from_schema(s, depth + 1)
                for name, s in properties.items()
                if name not in required
            },
        )
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), depth + 1), max_size=5)
    if kind == "integer":
        low, high = schema.get("minimum", -(2**63)), schema.get("maximum", 2**63)
        return st.integers(low, high) | st.integers(-(2**70), 2**70)
    if kind == "string":
        return st.text(max_size=40) | HOSTILE
    if kind == "boolean":
        return st.booleans()
    return json_values


def _bodies(operation: dict[str, Any]) -> st.SearchStrategy[bytes | None]:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    shaped = from_schema(content["schema"]) if content else json_values
    return st.one_of(
        shaped.map(lambda v: json.dumps(v).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
        st.none(),
    )


def _parameters(operation: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            p["name"]: (from_schema(p.get("schema", {})) | HOSTILE).map(str)
            for p in operation.get("parameters", [])
        }
    )


@pytest.fixture
def fuzzed(settings: Settings) -> Iterator[tuple[TestClient, str]]:
    key = new_app_key()
    seed_app(settings.database_url, "fuzz", demo_config(), key)
    app = create_app(replace(settings, admin_token=TOKEN, replay_requests_per_s=1000))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, key


FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(data=st.data())
@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_no_operation_answers_a_server_error(
    fuzzed: tuple[TestClient, str], path: str, method: str, data: st.DataObject
) -> None:
    client, key = fuzzed
    operation = DOCUMENT["paths"][path][method]
    values = data.draw(_parameters(operation), label="parameters")
    body = data.draw(_bodies(operation), label="body") if method == "post" else None
    in_path = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
    url = path.format(**{name: quote(values[name], safe="") for name in in_path})
    query = {p["name"]: values[p["name"]] for p in operation.get("parameters", [])
             if p["in"] == "query"}  # fmt: skip
    headers = {"Authorization": f"Bearer {TOKEN}"} if operation.get("security") and (
        path.startswith(("/v1/admin", "/v1/replay"))) else {"X-App-Key": key}  # fmt: skip
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "header" and values[parameter["name"]].isascii():
            headers[parameter["name"]] = values[parameter["name"]][:200].strip() or "x"
    response = client.request(method.upper(), url, params=query, content=body, headers=headers)
    status = response.status_code
    assert status < 500 or (status == 503 and "retry-after" in response.headers), response.text
    if status >= 400 and path != "/readyz":
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
