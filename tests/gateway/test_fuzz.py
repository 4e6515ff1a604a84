"""Hostile and random input never gets a 5xx, and errors keep their shape.

Hypothesis generates bodies and headers for every SDK route; the gateway
runs in-process against the real services. The OpenAPI document must list
every route the app serves.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route
from starlette.testclient import TestClient

from mediation.rules.model import EVENT_TYPES
from mediation.rules.ulid import encode_ulid

pytestmark = pytest.mark.integration

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
NOW = int(time.time() * 1000)
KEY = encode_ulid(NOW, bytes(range(10)))
maybe = st.one_of(json_values, st.just(None))
events = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.one_of(st.text(max_size=70), json_values),
        "opportunity_key": st.one_of(st.just(KEY), st.text(max_size=30), json_values),
        "type": st.one_of(st.sampled_from(EVENT_TYPES), json_values),
        "ts": st.one_of(st.integers(NOW - 10**9, NOW + 10**9), json_values),
        "source_id": maybe,
        "revenue_micros": st.one_of(st.integers(-5, 2**64), json_values),
        "currency": st.one_of(st.sampled_from(["USD", "usd", "EURO"]), json_values),
        "attrs": json_values,
    },
)
batches = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "sent_at": st.one_of(st.integers(NOW - 10**10, NOW + 10**10), json_values),
            "sdk": maybe,
            "events": st.one_of(st.lists(events, max_size=6), json_values),
        },
    ),
    json_values,
)
requests = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "placement_id": st.one_of(st.sampled_from(["interstitial_main", "nowhere"]), maybe),
            "device_id": maybe,
            "ts_ms": st.one_of(st.integers(), maybe),
            "context": st.one_of(
                st.dictionaries(st.sampled_from(["country", "os", "x"]), json_values, max_size=3),
                json_values,
            ),
        },
    ),
    json_values,
)
raw_bodies = st.binary(max_size=300)


def _dumps(value: object) -> bytes:
    # The stdlib encoder: it also writes integers beyond 64 bits, which the
    # gateway must refuse cleanly.
    return json.dumps(value).encode()


header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


def _check(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code < 500 or response.status_code == 503, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)


@FUZZ
@given(
    body=st.one_of(batches.map(_dumps), raw_bodies),
    encoding=st.sampled_from([None, "gzip", "identity", "br"]),
)
def test_events_route_never_fails_with_a_server_error(
    app_client: tuple[TestClient, str], body: bytes, encoding: str | None
) -> None:
    client, key = app_client
    headers = {"X-App-Key": key}
    if encoding:
        headers["Content-Encoding"] = encoding
    _check(client.post("/v1/events", content=body, headers=headers))


@FUZZ
@given(
    body=st.one_of(requests.map(_dumps), raw_bodies),
    idempotency_key=st.one_of(st.none(), header_values),
)
def test_requests_route_never_fails_with_a_server_error(
    app_client: tuple[TestClient, str], body: bytes, idempotency_key: str | None
) -> None:
    client, key = app_client
    headers = {"X-App-Key": key}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    _check(client.post("/v1/requests", content=body, headers=headers))


@FUZZ
@given(app_key=header_values, device_id=st.one_of(st.none(), st.text(max_size=200)))
def test_config_route_never_fails_with_a_server_error(
    app_client: tuple[TestClient, str], app_key: str, device_id: str | None
) -> None:
    client, _key = app_client
    params = {} if device_id is None else {"device_id": device_id}
    _check(client.get("/v1/config", params=params, headers={"X-App-Key": app_key}))


def test_openapi_lists_every_route_the_app_serves(app_client: tuple[TestClient, str]) -> None:
    client, _key = app_client
    document = client.get("/openapi.json").json()
    served = {
        (route.path, method.lower())
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route)
        for method in (route.methods or ())
        if method != "HEAD"
    }
    described = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served - {("/openapi.json", "get")} == described
