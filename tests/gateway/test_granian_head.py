"""``BoundedHead``: under Granian the app refuses an over-limit head as uvicorn's protocol does.

414 ``url_too_long`` / 431 ``headers_too_large`` in the error shape with
``Connection: close``, before the wrapped app runs; a head at the limits
is passed through. (The served process: tests/integration/test_slow_clients.py.)
"""

from __future__ import annotations

from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from gateway.granian_head import BoundedHead
from gateway.server_protocol import MAX_HEADER_BYTES, MAX_URL_BYTES

_SEEN: list[str] = []


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    _SEEN.append(scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _client() -> TestClient:
    _SEEN.clear()
    return TestClient(BoundedHead(_ok))


def test_a_url_over_the_limit_is_refused_414_in_the_error_shape() -> None:
    path = "/p"
    query = "q" * (MAX_URL_BYTES - len(path))  # with the "?": one byte over
    answer = _client().get(f"{path}?{query}")
    assert answer.status_code == 414
    assert answer.headers["connection"] == "close"
    assert answer.json()["error"]["code"] == "url_too_long"
    assert answer.json()["error"]["details"] == {"limit_bytes": MAX_URL_BYTES}
    assert _SEEN == []


def test_a_url_at_the_limit_is_served() -> None:
    path = "/p"
    answer = _client().get(f"{path}?{'q' * (MAX_URL_BYTES - len(path) - 1)}")
    assert answer.status_code == 200
    assert _SEEN == ["/p"]


def test_headers_over_the_limit_are_refused_431_in_the_error_shape() -> None:
    answer = _client().get("/p", headers={"x-big": "b" * MAX_HEADER_BYTES})
    assert answer.status_code == 431
    assert answer.headers["connection"] == "close"
    assert answer.json()["error"]["code"] == "headers_too_large"
    assert answer.json()["error"]["details"] == {"limit_bytes": MAX_HEADER_BYTES}
    assert _SEEN == []


def test_headers_just_under_the_limit_are_served() -> None:
    # TestClient adds a few headers of its own; leave them room.
    answer = _client().get("/p", headers={"x-pad": "p" * (MAX_HEADER_BYTES - 1024)})
    assert answer.status_code == 200
    assert _SEEN == ["/p"]
