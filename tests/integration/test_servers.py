"""Both HTTP servers (``mediation api --server``) serve the same gateway.

The access log, metrics, request ids and error answers come from the app,
not from the server: the same lines and series under uvicorn and Granian.
``--processes N`` starts N gateway processes behind the one port, and
SIGTERM stops them all through the app's shutdown. A refused request
head on a keep-alive connection is answered after the requests before it.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.server_protocol import MAX_URL_BYTES
from mediation.settings import Settings
from mediation.sim.processes import free_port, mediation_command, running
from mediation.sim.seed import demo_config, new_app_key, seed_app

pytestmark = pytest.mark.integration
SERVERS = pytest.mark.parametrize("server", ["uvicorn", "granian"])


def _access_lines(log: Path) -> list[dict[str, object]]:
    return [
        orjson.loads(line.split(" mediation.access ", 1)[1])
        for line in log.read_text().splitlines()
        if " mediation.access " in line
    ]


@SERVERS
def test_the_access_log_metrics_and_errors_are_the_same_under_each_server(
    settings: Settings, child_env: dict[str, str], tmp_path: Path, server: str
) -> None:
    key = new_app_key()
    seed_app(settings.database_url, "servers", demo_config(), key)
    port = free_port()
    argv = mediation_command("api", "--port", str(port), "--server", server)
    env = dict(child_env, MEDIATION_ACCESS_LOG="1", MEDIATION_LOG_LEVEL="INFO")
    log = tmp_path / "gateway.log"
    with running("gateway", argv, env, log) as gateway:
        base = f"http://127.0.0.1:{port}"
        gateway.wait_http(f"{base}/readyz", timeout_s=60)
        now = int(time.time() * 1000)
        request = {"placement_id": "interstitial_main", "device_id": "d", "ts_ms": now}
        headers = {"X-App-Key": key, "X-Request-Id": "servers-test-0001"}
        served = httpx.post(f"{base}/v1/requests", json=request, headers=headers, timeout=10)
        assert served.status_code == 200, served.text
        assert served.headers["x-request-id"] == "servers-test-0001"
        missing = httpx.get(f"{base}/v1/nothing", timeout=10)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found", missing.text
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        exit_code = gateway.stop(signal.SIGTERM)
    assert exit_code in (0, -signal.SIGTERM), gateway.tail()
    assert 'mediation_http_requests_total{route="/v1/requests",status="200"} 1.0' in metrics
    assert 'mediation_http_requests_total{route="unmatched",status="404"} 1.0' in metrics
    lines = [line for line in _access_lines(log) if line["route"] != "/readyz"]
    assert {k: v for k, v in lines[0].items() if k != "duration_ms"} == {
        "method": "POST",
        "route": "/v1/requests",
        "status": 200,
        "request_id": "servers-test-0001",
    }
    assert [(line["route"], line["status"]) for line in lines[1:3]] == [
        ("unmatched", 404),
        ("/metrics", 200),
    ]


@SERVERS
def test_processes_n_starts_n_gateways_and_sigterm_stops_them_all(
    settings: Settings, child_env: dict[str, str], tmp_path: Path, server: str
) -> None:
    port = free_port()
    argv = mediation_command("api", "--port", str(port), "--server", server, "--processes", "2")
    env = dict(child_env, MEDIATION_LOG_LEVEL="INFO")
    log = tmp_path / "gateway.log"
    with running("gateway", argv, env, log) as gateway:
        gateway.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        deadline = time.monotonic() + 60
        while log.read_text().count("gateway ready") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        exit_code = gateway.stop(signal.SIGTERM)
    assert exit_code in (0, -signal.SIGTERM), gateway.tail()
    text = log.read_text()
    assert text.count("gateway ready") == 2, text
    assert text.count("gateway stopped (0 message(s) unflushed)") == 2, text


@SERVERS
def test_pipelined_requests_before_a_refused_head_are_answered_first(
    child_env: dict[str, str], tmp_path: Path, server: str
) -> None:
    port = free_port()
    argv = mediation_command("api", "--port", str(port), "--server", server)
    with running("gateway", argv, child_env, tmp_path / "gateway.log") as gateway:
        gateway.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        long_url = b"/healthz?" + b"q" * MAX_URL_BYTES
        sent = (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET " + long_url + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(sent)
            received = b""
            while chunk := s.recv(65536):  # until the server closes
                received += chunk
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", received) == [b"200", b"200", b"414"], received[:300]
    assert received.index(b'"openapi"') < received.index(b'"code":"url_too_long"')
