"""During a staged rollout the device's bucket decides which config it gets."""

from __future__ import annotations

import time

import pytest
from psycopg.types.json import Jsonb
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.catalog import PublishedConfig, Rollout
from mediation.rules.identity import rollout_bucket
from mediation.rules.waterfall import parse_config
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app
from storage.db import connect


def _config(version: int) -> PublishedConfig:
    body = demo_config()
    return PublishedConfig("app", version, f"sum{version}", body, parse_config(version, body))


@pytest.mark.parametrize(
    ("percent", "previous", "bucket", "served"),
    [
        (100, 1, None, 2),
        (100, 1, 99, 2),  # published: everyone
        (10, 1, 9, 2),
        (10, 1, 10, 1),
        (10, 1, None, 1),  # rolling out to buckets < 10
        (0, 1, 5, 1),  # rolled back: the previous version
        (10, None, 50, 2),  # first version: nothing to fall back on
        (0, None, 5, None),  # first version rolled back: nothing served
    ],
)
def test_rollout_serves_by_bucket(
    percent: int, previous: int | None, bucket: int | None, served: int | None
) -> None:
    rollout = Rollout(_config(2), _config(previous) if previous else None, percent)
    config = rollout.config_for_bucket(bucket)
    assert (config.version if config else None) == served


def _device_in(low: int, high: int) -> str:
    return next(f"dev-{i}" for i in range(10_000) if low <= rollout_bucket(f"dev-{i}") < high)


@pytest.mark.integration
def test_gateway_serves_the_new_version_only_to_the_rolled_out_buckets(settings: Settings) -> None:
    key = new_app_key()
    seed_app(settings.database_url, "roll", demo_config(), key)  # v1, published
    new_body = demo_config(closure_window_ms=600_000)
    with connect(settings.database_url) as conn:
        conn.execute(
            "INSERT INTO config_snapshots (app_id, version, body, checksum, created_by) "
            "VALUES ('roll', 2, %s, 'v2sum', 'test')",
            (Jsonb(new_body),),
        )
        conn.execute(
            "INSERT INTO publish_operations (app_id, version, previous_version, state, "
            "rollout_percent) VALUES ('roll', 2, 1, 'rolling_out', 30)"
        )
    inside, outside = _device_in(0, 30), _device_in(30, 100)
    with TestClient(create_app(settings)) as client:
        headers = {"X-App-Key": key}
        versions = {
            device: client.get("/v1/config", params={"device_id": device}, headers=headers).json()[
                "version"
            ]
            for device in (inside, outside)
        }
        assert versions == {inside: 2, outside: 1}
        assert client.get("/v1/config", headers=headers).json()["version"] == 1
        for device, version in versions.items():
            decision = client.post(
                "/v1/requests",
                headers=headers,
                json={
                    "placement_id": "interstitial_main",
                    "device_id": device,
                    "ts_ms": int(time.time() * 1000),
                },
            ).json()
            assert decision["config_version"] == version
