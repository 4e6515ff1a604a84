"""The worker's HTTP endpoint: ``/metrics``, ``/healthz``, and a port that is taken."""

from __future__ import annotations

import socket

import httpx
import pytest

from dataflows.metrics import MetricsPortInUseError, WorkerMetrics
from mediation.sim.processes import free_port


def test_healthz_answers_beside_metrics() -> None:
    metrics = WorkerMetrics(lambda: 0)
    port = free_port()
    server = metrics.serve(port)
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert scraped.status_code == 200
        assert "mediation_worker_open_opportunities" in scraped.text
        assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404
    finally:
        assert server is not None
        server.shutdown()
        server.server_close()


def test_a_busy_metrics_port_fails_naming_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsPortInUseError, match=f"127.0.0.1:{port}") as failure:
            WorkerMetrics(lambda: 0).serve(port)
    assert "MEDIATION_WORKER_METRICS_PORT" in str(failure.value)
    assert "\n" not in str(failure.value)


def test_port_zero_serves_nothing() -> None:
    assert WorkerMetrics(lambda: 0).serve(0) is None
