"""Slow clients (slowloris): connections that trickle their headers or body do not starve others.

A real gateway process (uvicorn, loopback) gets 150 connections that send a
request line and then one header byte at a time, and 50 that promise a
body and send it a byte at a time, for a few seconds. Meanwhile ordinary
SDK traffic must be answered as usual: every sync request and event batch
gets its 200. Bounded: the slow connections are closed by the test.

uvicorn has no timeout for reading a first request's headers, so each
slow connection holds a socket until the client gives up: production
puts a proxy or load balancer with header and body timeouts in front
(docs/operations.md).
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

from mediation.processes import free_port, mediation_command, running
from mediation.seed import demo_config, new_app_key, seed_app
from mediation.settings import Settings

pytestmark = pytest.mark.integration

SLOW_HEADERS, SLOW_BODIES, SECONDS = 150, 50, 4.0


def _trickle(port: int, stop: threading.Event, opened: list[socket.socket]) -> None:
    sockets = []
    for n in range(SLOW_HEADERS + SLOW_BODIES):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if n < SLOW_HEADERS:
            s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        else:
            s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
        sockets.append(s)
    opened.extend(sockets)
    while not stop.is_set():
        for s in sockets:
            with contextlib.suppress(OSError):  # the server may close some: allowed
                s.send(b"a")
        stop.wait(0.25)


def test_slow_clients_do_not_starve_ordinary_traffic(
    settings: Settings, child_env: dict[str, str], tmp_path: Path
) -> None:
    key = new_app_key()
    seed_app(settings.database_url, "slowloris", demo_config(), key)
    port = free_port()
    argv = mediation_command("api", "--role", "all", "--host", "127.0.0.1", "--port", str(port))
    with running("gateway", argv, child_env, tmp_path / "gateway.log") as gateway:
        base = f"http://127.0.0.1:{port}"
        gateway.wait_http(f"{base}/readyz", timeout_s=60)
        stop, opened = threading.Event(), []
        trickler = threading.Thread(target=_trickle, args=(port, stop, opened), daemon=True)
        trickler.start()
        time.sleep(1.0)  # every slow connection is open and trickling
        statuses = []
        with httpx.Client(base_url=base, headers={"X-App-Key": key}, timeout=10) as client:
            started = time.monotonic()
            while time.monotonic() - started < SECONDS:
                now = int(time.time() * 1000)
                request = {"placement_id": "interstitial_main", "device_id": "d", "ts_ms": now}
                sync = client.post("/v1/requests", json=request)
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
