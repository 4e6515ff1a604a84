"""The gateway's business metrics: sync answers by app and placement, config rollouts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.metrics import MAX_APP_LABELS, MAX_PLACEMENT_LABELS, GatewayMetrics
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app

ANSWERS = "mediation_gateway_sync_answers_total"


def _answers(metrics: GatewayMetrics, app: str, placement: str, result: str) -> float | None:
    labels = {"app": app, "placement": placement, "result": result}
    return metrics.registry.get_sample_value(ANSWERS, labels)


def test_sync_answers_are_counted_by_app_placement_and_result() -> None:
    metrics = GatewayMetrics.create()
    metrics.count_sync_answer("demo", "main", "fill")
    metrics.count_sync_answer("demo", "main", "fill")
    metrics.count_sync_answer("demo", "main", "no_fill")
    metrics.count_sync_answer("demo", "banner", "no_fill")
    assert _answers(metrics, "demo", "main", "fill") == 2
    assert _answers(metrics, "demo", "main", "no_fill") == 1
    assert _answers(metrics, "demo", "banner", "no_fill") == 1
    assert _answers(metrics, "demo", "banner", "fill") is None


def test_apps_and_placements_past_the_cap_are_counted_as_other() -> None:
    metrics = GatewayMetrics.create()
    for n in range(MAX_APP_LABELS + 3):
        metrics.count_sync_answer(f"app{n}", "main", "fill")
    for n in range(MAX_PLACEMENT_LABELS + 4):
        metrics.count_sync_answer("app0", f"p{n}", "no_fill")
    assert _answers(metrics, f"app{MAX_APP_LABELS - 1}", "main", "fill") == 1
    assert _answers(metrics, "other", "main", "fill") == 3
    assert _answers(metrics, "app0", f"p{MAX_PLACEMENT_LABELS - 2}", "no_fill") == 1
    # "main" took one placement slot: five placements came after the cap.
    assert _answers(metrics, "app0", "other", "no_fill") == 5
    series = [
        sample
        for family in metrics.registry.collect()
        if family.name == "mediation_gateway_sync_answers"
        for sample in family.samples
        if sample.name == ANSWERS
    ]
    assert len(series) <= (MAX_APP_LABELS + 1) + (MAX_PLACEMENT_LABELS + 1)


def test_config_rollouts_are_read_from_the_catalog_at_scrape_time() -> None:
    metrics = GatewayMetrics.create()
    version = "mediation_config_version"
    assert metrics.registry.get_sample_value(version, {"app_id": "demo"}) is None
    rollouts = {"demo": (3, 25)}
    metrics.watch_rollouts(lambda: rollouts)
    assert metrics.registry.get_sample_value(version, {"app_id": "demo"}) == 3
    percent = "mediation_config_rollout_percent"
    assert metrics.registry.get_sample_value(percent, {"app_id": "demo"}) == 25
    rollouts["demo"] = (3, 0)  # rolled back
    assert metrics.registry.get_sample_value(percent, {"app_id": "demo"}) == 0


@pytest.fixture
def client_and_key(settings: Settings) -> Iterator[tuple[TestClient, str]]:
    key = new_app_key()
    seed_app(settings.database_url, "demo", demo_config(), key)
    with TestClient(create_app(settings)) as client:
        yield client, key


@pytest.mark.integration
def test_a_sync_answer_is_counted_with_its_app_and_placement(
    client_and_key: tuple[TestClient, str],
) -> None:
    client, key = client_and_key
    response = client.post(
        "/v1/requests",
        json={
            "placement_id": "interstitial_main",
            "device_id": "device-1",
            "ts_ms": int(time.time() * 1000),
            "context": {"country": "US", "os": "ios"},
        },
        headers={"X-App-Key": key},
    )
    assert response.status_code == 200, response.text
    metrics = client.get("/metrics").text
    assert f'{ANSWERS}{{app="demo",placement="interstitial_main",result="fill"}} 1.0' in metrics


@pytest.mark.integration
def test_the_served_config_of_each_app_is_exported_from_the_catalog(
    client_and_key: tuple[TestClient, str],
) -> None:
    """The dashboard's publish and rollback annotations read these gauges."""
    client, _key = client_and_key
    metrics = client.get("/metrics").text
    assert 'mediation_config_version{app_id="demo"} 1.0' in metrics
    assert 'mediation_config_rollout_percent{app_id="demo"} 100.0' in metrics
