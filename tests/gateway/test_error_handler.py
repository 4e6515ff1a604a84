"""One error path: routes raise API errors, one handler renders them in the error shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.app import GatewayApp, create_app
from gateway.errors import (
    ApiRefusalError,
    ApiUnavailableError,
    api_error_response,
    error_body,
    translated,
)
from gateway.http import BodyError, BodyTooLargeError
from mediation.errors import InputError, ServiceError
from mediation.settings import Settings
from storage.configs import PublishError

ROOT = Path(__file__).resolve().parents[2]


def test_refusals_are_input_errors_and_unavailable_services_service_errors() -> None:
    refusal = ApiRefusalError(429, "rate_limited", "slow down")
    unavailable = ApiUnavailableError(503, "broker_unavailable", "retry")
    assert isinstance(refusal, InputError) and not isinstance(refusal, ServiceError)
    assert isinstance(unavailable, ServiceError) and not isinstance(unavailable, InputError)
    # The instance carries the API's code; the class keeps its own stable one.
    assert refusal.code == "rate_limited" and ApiRefusalError.code == "api_request_refused"
    with pytest.raises(ValueError, match="4xx"):
        ApiRefusalError(503, "broker_unavailable", "retry")
    with pytest.raises(ValueError, match="5xx"):
        ApiUnavailableError(429, "rate_limited", "slow down")


def test_an_api_error_renders_as_the_error_shape_with_its_headers() -> None:
    response = api_error_response(
        ApiRefusalError(
            429, "rate_limited", "over the limit", {"limit_per_s": 5}, {"Retry-After": "1"}
        )
    )
    assert response.status_code == 429
    assert response.body == (
        b'{"error":{"code":"rate_limited","message":"over the limit","details":{"limit_per_s":5}}}'
    )
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/json"


def test_translated_raises_the_api_error_of_the_nearest_class_and_passes_others() -> None:
    def too_large(exc: BodyError) -> ApiRefusalError:
        return ApiRefusalError(exc.status_code, exc.code, str(exc))

    with pytest.raises(ApiRefusalError) as caught, translated({BodyError: too_large}):
        raise BodyTooLargeError(10)
    assert (caught.value.status_code, caught.value.code) == (413, "body_too_large")
    assert isinstance(caught.value.__cause__, BodyTooLargeError)

    with pytest.raises(PublishError), translated({BodyError: too_large}):
        raise PublishError("busy", "not translated here")


@pytest.fixture
def raising_client(settings: Settings) -> Iterator[TestClient]:
    """The gateway with routes that raise; a 500 is answered, not raised."""

    async def refuse(_request: Request) -> Response:
        raise ApiRefusalError(
            409, "request_in_flight", "still running", {"n": 1}, headers={"Retry-After": "3"}
        )

    async def unavailable(_request: Request) -> Response:
        raise ApiUnavailableError(
            503, "broker_unavailable", "retry later", headers={"Retry-After": "1"}
        )

    async def untranslated(_request: Request) -> Response:
        raise PublishError("busy", "secret internals")

    app = create_app(settings)
    app.router.routes.extend(
        [
            Route("/refuse", refuse, methods=["GET"]),
            Route("/unavailable", unavailable, methods=["GET"]),
            Route("/untranslated", untranslated, methods=["GET"]),
        ]
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.integration
def test_an_api_error_raised_in_a_route_answers_its_status_shape_and_headers(
    raising_client: TestClient,
) -> None:
    response = raising_client.get("/refuse", headers={"X-Request-Id": "trace-me-123"})
    assert response.status_code == 409
    assert response.content == (
        b'{"error":{"code":"request_in_flight","message":"still running","details":{"n":1}}}'
    )
    assert response.headers["retry-after"] == "3"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "trace-me-123"

    response = raising_client.get("/unavailable")
    assert response.status_code == 503
    assert response.json() == {
        "error": {"code": "broker_unavailable", "message": "retry later", "details": {}}
    }
    assert response.headers["retry-after"] == "1"


@pytest.mark.integration
def test_an_error_nobody_translated_is_a_500_that_tells_nothing(
    raising_client: TestClient,
) -> None:
    response = raising_client.get("/untranslated")
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "unexpected error; quote the X-Request-Id to support",
            "details": {},
        }
    }
    assert "secret" not in response.text and "busy" not in response.text


@pytest.mark.integration
def test_the_hot_routes_render_api_errors_and_unexpected_ones_the_same_way(
    settings: Settings,
) -> None:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/events", json={})
        assert response.status_code == 401
        assert response.content == (
            b'{"error":{"code":"unknown_app_key",'
            b'"message":"X-App-Key is missing or not a valid write key","details":{}}}'
        )

        async def boom(_request: Request) -> Response:
            raise RuntimeError("secret internals")

        assert isinstance(app, GatewayApp)
        app._hot["/v1/events"] = boom
        response = client.post("/v1/events", json={})
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        assert "secret" not in response.text


def test_the_server_protocol_writes_the_same_shape() -> None:
    # Its refusals are written as raw bytes, without Starlette.
    assert orjson.loads(error_body("url_too_long", "too long", {"limit_bytes": 8})) == {
        "error": {"code": "url_too_long", "message": "too long", "details": {"limit_bytes": 8}}
    }
