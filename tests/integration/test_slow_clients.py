"""Slow clients (slowloris): connections that trickle their headers or body do not starve others.

Each test runs against both HTTP servers ``mediation api --server`` offers.

A real gateway process (loopback) gets 150 connections that send a
request line and then one header byte at a time, and 50 that promise a
body and send it a byte at a time, for a few seconds. Meanwhile ordinary
SDK traffic must be answered as usual: every sync request and event batch
gets its 200. Bounded: the slow connections are closed by the test.

uvicorn has no timeout for reading a first request's headers (Granian's
is 30 s), so each slow connection holds a socket until the client gives
up: production puts a proxy or load balancer with header and body
timeouts in front (docs/operations.md).

Oversized request heads: a 16 MiB header and a 4 MiB URL, sent over raw
sockets to a real gateway process, are refused as soon as they pass the
limits (uvicorn: 431 and 414 in the error shape; Granian's parser: a bare
431 for any head over its buffer), and the gateway's resident memory (its
/metrics) does not grow by what they sent. A head just over a limit is
answered 414 or 431 in the error shape by both servers; a head just under
the limits is served.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from gateway.server_protocol import MAX_HEADER_BYTES, MAX_URL_BYTES
from mediation.settings import Settings
from mediation.sim.processes import free_port, mediation_command, running
from mediation.sim.seed import demo_config, new_app_key, seed_app

pytestmark = pytest.mark.integration
SERVERS = pytest.mark.parametrize("server", ["uvicorn", "granian"])

SLOW_HEADERS, SLOW_BODIES, SECONDS = 150, 50, 4.0


def _trickle(port: int, key: str, stop: threading.Event, opened: list[socket.socket]) -> None:
    sockets = []
    for n in range(SLOW_HEADERS + SLOW_BODIES):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if n < SLOW_HEADERS:
            s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        else:
            # With a valid key, so the gateway really waits for the body (a
            # refused key would answer 401 at once and spend this address's
            # budget of failed authentications, throttling the traffic below).
            s.sendall(
                b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-App-Key: %s\r\n"
                b"Content-Length: 100000\r\n\r\n{" % key.encode()
            )
        sockets.append(s)
    opened.extend(sockets)
    while not stop.is_set():
        for s in sockets:
            with contextlib.suppress(OSError):  # the server may close some: allowed
                s.send(b"a")
        stop.wait(0.25)


def _gateway_argv(port: int, server: str) -> list[str]:
    return mediation_command(
        "api", "--role", "all", "--host", "127.0.0.1", "--port", str(port), "--server", server
    )


@SERVERS
def test_slow_clients_do_not_starve_ordinary_traffic(
    settings: Settings, child_env: dict[str, str], tmp_path: Path, server: str
) -> None:
    key = new_app_key()
    seed_app(settings.database_url, "slowloris", demo_config(), key)
    port = free_port()
    argv = _gateway_argv(port, server)
    with running("gateway", argv, child_env, tmp_path / "gateway.log") as gateway:
        base = f"http://127.0.0.1:{port}"
        gateway.wait_http(f"{base}/readyz", timeout_s=60)
        stop, opened = threading.Event(), list[socket.socket]()
        trickler = threading.Thread(target=_trickle, args=(port, key, stop, opened), daemon=True)
        trickler.start()
        time.sleep(1.0)  # every slow connection is open and trickling
        statuses = []
        with httpx.Client(base_url=base, headers={"X-App-Key": key}, timeout=10) as client:
            started = time.monotonic()
            while time.monotonic() - started < SECONDS:
                now = int(time.time() * 1000)
                request = {"placement_id": "interstitial_main", "device_id": "d", "ts_ms": now}
                sync = client.post("/v1/requests", json=request)
                assert sync.status_code == 200, sync.text
                statuses.append(sync.status_code)
                batch = {"sdk": "t/1", "sent_at": now, "events": [{
                    "event_id": uuid.uuid4().hex, "opportunity_key": sync.json()["opportunity_key"],
                    "type": "loaded", "ts": now}]}  # fmt: skip
                statuses.append(client.post("/v1/events", json=batch).status_code)
        stop.set()
        trickler.join(timeout=10)
        for s in opened:
            s.close()
        assert len(opened) == SLOW_HEADERS + SLOW_BODIES
        assert gateway.alive()
    assert len(statuses) >= 10 and set(statuses) == {200}, statuses


MIB = 1 << 20


def _rss_bytes(base: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1])
    raise AssertionError("no process_resident_memory_bytes in /metrics")


def _send_head(port: int, head: bytes) -> tuple[bytes, socket.socket]:
    """Send ``head`` from a thread while reading the answer; the socket stays open."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)

    def send() -> None:
        with contextlib.suppress(OSError):  # the server stops reading once it refused
            s.sendall(head)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    with contextlib.suppress(OSError):
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer, s


def _refused(answer: bytes, status: bytes, code: bytes) -> bool:
    return answer.startswith(b"HTTP/1.1 " + status) and b'"code":"' + code + b'"' in answer


@SERVERS
def test_oversized_request_heads_are_refused_early_and_not_kept(
    settings: Settings, child_env: dict[str, str], tmp_path: Path, server: str
) -> None:
    port = free_port()
    argv = _gateway_argv(port, server)
    with running("gateway", argv, child_env, tmp_path / "gateway.log") as gateway:
        base = f"http://127.0.0.1:{port}"
        gateway.wait_http(f"{base}/readyz", timeout_s=60)
        near = b"GET /healthz?" + b"q" * (MAX_URL_BYTES - 200) + b" HTTP/1.1\r\nHost: x\r\n"
        pads = range(MAX_HEADER_BYTES // 1024 - 1)  # about 1 KiB each: just under the limit
        near += b"".join(b"X-Pad-%d: %s\r\n" % (n, b"p" * 900) for n in pads)
        answer, s = _send_head(port, near + b"Connection: close\r\n\r\n")
        s.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]

        # Just over a limit: refused in the error shape by either server.
        over_url = b"GET /healthz?" + b"q" * MAX_URL_BYTES + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        answer, s = _send_head(port, over_url)
        s.close()
        assert _refused(answer, b"414", b"url_too_long"), answer[:300]
        over_headers = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
        over_headers += b"b" * MAX_HEADER_BYTES + b"\r\n\r\n"
        answer, s = _send_head(port, over_headers)
        s.close()
        assert _refused(answer, b"431", b"headers_too_large"), answer[:300]

        before = _rss_bytes(base)
        big = b"a" * (16 * MIB)
        big_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + big + b"\r\n\r\n"
        header_answer, header_socket = _send_head(port, big_header)
        long_url = b"GET /healthz?" + b"q" * (4 * MIB) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        url_answer, url_socket = _send_head(port, long_url)
        grown = _rss_bytes(base) - before  # while both connections are still open
        header_socket.close()
        url_socket.close()
        if server == "uvicorn":
            assert _refused(header_answer, b"431", b"headers_too_large"), header_answer[:200]
            assert _refused(url_answer, b"414", b"url_too_long"), url_answer[:200]
        else:  # Granian's parser: the head does not fit its buffer, a bare 431
            assert header_answer.startswith(b"HTTP/1.1 431 "), header_answer[:200]
            assert url_answer.startswith(b"HTTP/1.1 431 "), url_answer[:200]
        assert grown < 8 * MIB, f"resident memory grew by {grown / MIB:.1f} MiB"
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        assert gateway.alive()
