"""The bounded request head (``gateway/server_protocol.py``) on a keep-alive connection.

A real uvicorn server with the gateway's protocol class, in this process,
serving a small ASGI app over loopback. Requests that come before the
refused one on the same connection (keep-alive, pipelined) are answered
first and in order; the refusal follows them and the connection closes.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from gateway.server_protocol import MAX_URL_BYTES
from mediation.sim.processes import free_port

_SERVER_ERRORS: list[BaseException] = []


async def _slow_ok(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers ``ok <path>`` a moment later, so a pipelined request arrives while it waits."""
    assert scope["type"] == "http"
    try:
        await asyncio.sleep(0.1)
        body = b"ok " + scope["path"].encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
    except BaseException as exc:  # the answer could not be written
        _SERVER_ERRORS.append(exc)
        raise


@pytest.fixture
def server_port() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        _slow_ok,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="gateway.server_protocol:LimitedHttpToolsProtocol",
        lifespan="off",
        log_level="critical",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    _SERVER_ERRORS.clear()
    yield port
    server.should_exit = True
    thread.join(timeout=30)


def _exchange(port: int, sent: bytes) -> bytes:
    """Send ``sent`` at once and read until the server closes (bounded by the socket timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(sent)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    return received


def _statuses(received: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", received)


def test_keep_alive_requests_before_a_refused_head_are_answered_first_and_in_order(
    server_port: int,
) -> None:
    long_url = b"/" + b"q" * (MAX_URL_BYTES + 1)
    sent = (
        b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET " + long_url + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    received = _exchange(server_port, sent)
    assert _statuses(received) == [b"200", b"200", b"414"], received[:300]
    assert received.index(b"ok /first") < received.index(b"ok /second")
    assert received.index(b"ok /second") < received.index(b'"code":"url_too_long"')
    assert not _SERVER_ERRORS, _SERVER_ERRORS


def test_a_refused_head_on_an_idle_keep_alive_connection_is_answered_at_once(
    server_port: int,
) -> None:
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as s:
        s.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b"ok /first" not in first:
            chunk = s.recv(65536)
            assert chunk, first
            first += chunk
        s.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (32 * 1024) + b"\r\n\r\n")
        refused = b""
        while chunk := s.recv(65536):
            refused += chunk
    assert _statuses(first) == [b"200"]
    assert _statuses(refused) == [b"431"], refused[:300]
    assert b'"code":"headers_too_large"' in refused
