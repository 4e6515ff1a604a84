"""The worker's HTTP endpoint (``/metrics``, ``/healthz``, a taken port) and its counters."""

from __future__ import annotations

import socket

import httpx
import pytest
from builders import event, opportunity

from dataflows.metrics import (
    MAX_APP_LABELS,
    MAX_SOURCE_LABELS,
    MetricsPortInUseError,
    WorkerMetrics,
)
from mediation.rules.closure import close_opportunity
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


# ---- business counters: archives by outcome, revenue, impressions ------------------


def _sample(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _closed(key: str, app: str = "app", source: str = "net_a", currency: str | None = "USD"):
    shown = event(key, f"{key}-i", "impression", 100, source_id=source, currency=currency)
    return close_opportunity(opportunity(key, app_id=app), [shown])


def test_archives_are_counted_by_app_and_outcome_with_revenue_and_impressions() -> None:
    metrics = WorkerMetrics(lambda: 0)
    metrics.observe_output(_closed("k1"))
    metrics.observe_output(_closed("k2"))
    metrics.observe_output(_closed("k3", currency="EUR"))
    metrics.observe_output(close_opportunity(opportunity("k4", status="no_fill"), []))

    archives = "mediation_worker_archives_by_outcome_total"
    assert _sample(metrics, archives, app="app", outcome="impressed") == 3
    assert _sample(metrics, archives, app="app", outcome="no_fill") == 1
    assert _sample(metrics, "mediation_worker_archives_total") == 4
    revenue = "mediation_worker_revenue_micros_total"
    assert _sample(metrics, revenue, app="app", source="net_a", currency="USD") == 1000
    assert _sample(metrics, revenue, app="app", source="net_a", currency="EUR") == 500
    assert _sample(metrics, "mediation_worker_impressions_total", app="app", source="net_a") == 3


def test_apps_and_sources_past_the_cap_and_odd_currencies_are_counted_as_other() -> None:
    metrics = WorkerMetrics(lambda: 0)
    for n in range(MAX_APP_LABELS + 5):
        metrics.observe_output(_closed(f"a{n}", app=f"app{n}"))
    for n in range(MAX_SOURCE_LABELS + 5):
        metrics.observe_output(_closed(f"s{n}", source=f"src{n}"))
    metrics.observe_output(_closed("c1", currency="usd; drop"))

    archives = "mediation_worker_archives_by_outcome_total"
    assert _sample(metrics, archives, app="app0", outcome="impressed") == 1
    assert _sample(metrics, archives, app=f"app{MAX_APP_LABELS - 1}", outcome="impressed") == 1
    assert _sample(metrics, archives, app=f"app{MAX_APP_LABELS}", outcome="impressed") is None
    # 5 apps past the cap, then every "app" archive (its name came too late).
    assert _sample(metrics, archives, app="other", outcome="impressed") == 5 + MAX_SOURCE_LABELS + 6
    impressions = "mediation_worker_impressions_total"
    sources = {
        s.labels["source"]
        for family in metrics.registry.collect()
        if family.name == "mediation_worker_impressions"
        for s in family.samples
        if s.name == impressions
    }
    assert len(sources) == MAX_SOURCE_LABELS + 1
    assert "other" in sources
    revenue = "mediation_worker_revenue_micros_total"
    assert _sample(metrics, revenue, app="other", source="net_a", currency="other") == 500
