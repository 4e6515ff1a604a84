"""The rollback playbook (docs/operations.md), end to end on the running stack.

The gateway (``mediation api``) and the publish worker (``mediation
publish-worker``) run as child processes; SDK traffic keeps flowing. A
deliberately bad config (it drops a placement the SDKs use) is published
with a staged plan: its cohort's error rate rises, the health gate rolls it
back by itself, and every device is served the previous version again.
Then a good config is published and rolled back by hand with the CLI.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from mediation.rules.identity import rollout_bucket
from mediation.settings import Settings
from mediation.sim.processes import free_port, mediation_command, running
from mediation.sim.seed import demo_config, new_app_key, seed_app
from storage.configs import get_operation, list_operations, list_transitions
from storage.db import connect

pytestmark = pytest.mark.integration


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _cli(
    env: dict[str, str], *args: str, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mediation_command(*args),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        stdin=subprocess.DEVNULL,
    )


class Traffic:
    """SDK sync requests for one placement from many devices, until stopped."""

    def __init__(self, url: str, app_key: str, placement: str):
        self._url, self._key, self._placement = url, app_key, placement
        self._stop = threading.Event()
        self.statuses: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, headers={"X-App-Key": self._key}) as client:
            i = 0
            while not self._stop.is_set():
                response = client.post(
                    "/v1/requests",
                    json={
                        "placement_id": self._placement,
                        "device_id": f"device-{i}",
                        "ts_ms": int(time.time() * 1000),
                    },
                )
                self.statuses.append(response.status_code)
                i += 1
                time.sleep(0.01)


def _served_version(client: httpx.Client, app_key: str, device: str) -> int:
    response = client.get(
        "/v1/config", params={"device_id": device}, headers={"X-App-Key": app_key}
    )
    return int(response.json()["version"])


def test_bad_config_rolls_back_by_itself_and_a_manual_rollback_restores_the_previous(
    settings: Settings, child_env: dict[str, str]
) -> None:
    app_key = new_app_key()
    seed_app(settings.database_url, "play", demo_config(), app_key)  # v1, published
    bad = demo_config()
    bad["placements"]["interstitial_v2"] = bad["placements"].pop("interstitial_main")
    good = demo_config(grace_ms=20_000)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logs = settings.data_dir
    device_in_first_half = next(f"d{i}" for i in range(1000) if rollout_bucket(f"d{i}") < 50)
    with (
        running(
            "gateway", mediation_command("api", "--port", str(port)), child_env, logs / "gw.log"
        ) as gateway,
        running(
            "publish-worker",
            mediation_command("publish-worker", "--interval", "0.2"),
            child_env,
            logs / "publish.log",
        ) as worker,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        gateway.wait_http(f"{url}/readyz")
        for name, body in (("bad", bad), ("good", good)):
            (logs / f"{name}.json").write_text(json.dumps(body))

        # 1. The bad version: staged, the gate watches each stage for 4 s.
        pushed = _cli(child_env, "config", "push", str(logs / "bad.json"), "--app-id", "play")
        assert pushed.returncode == 0, pushed.stderr
        assert "stored as version 2" in pushed.stdout
        with Traffic(url, app_key, "interstitial_main") as traffic:
            published = _cli(
                child_env,
                "config", "publish", "--app-id", "play", "--version", "2",
                "--plan", "50:4s,100", "--min-requests", "20", "--wait", "--timeout", "60",
                timeout_s=90,
            )  # fmt: skip
        assert published.returncode == 3, published.stdout + published.stderr  # not published
        assert "rolling_back" in published.stdout and "rolled_back" in published.stdout
        assert "health gate at 50%: error rate" in published.stdout
        assert 422 in traffic.statuses and 200 in traffic.statuses
        with connect(settings.database_url, autocommit=True) as conn:
            bad_op = list_operations(conn, "play")[0]
            assert bad_op.state == "rolled_back"
        # Every device is back on v1 within the gateway's refresh (2 s).
        assert _wait(lambda: _served_version(client, app_key, device_in_first_half) == 1, 5)

        # 2. A good version, published at once, then rolled back by hand.
        assert (
            _cli(
                child_env, "config", "push", str(logs / "good.json"), "--app-id", "play"
            ).returncode
            == 0
        )
        published = _cli(
            child_env,
            "config", "publish", "--app-id", "play", "--version", "3", "--plan", "100",
            "--wait", "--timeout", "30",
        )  # fmt: skip
        assert published.returncode == 0, published.stdout + published.stderr
        assert _wait(lambda: _served_version(client, app_key, "anyone") == 3, 5)
        with connect(settings.database_url, autocommit=True) as conn:
            good_op = list_operations(conn, "play")[0]
        rolled = _cli(
            child_env,
            "config", "rollback", "--operation-id", str(good_op.id),
            "--reason", "playbook drill", "--wait", "--timeout", "30",
        )  # fmt: skip
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert "rolled_back" in rolled.stdout and "-> published" not in rolled.stdout
        assert _wait(lambda: _served_version(client, app_key, "anyone") == 1, 5)
        assert worker.alive() and gateway.alive()

    with connect(settings.database_url, autocommit=True) as conn:
        operation = get_operation(conn, good_op.id)
        assert operation is not None and operation.state == "rolled_back"
        reasons = [t.reason for t in list_transitions(conn, good_op.id)]
        assert any("rollback by" in r and "playbook drill" in r for r in reasons)
        audit = conn.execute(
            "SELECT count(*) FROM audit_records WHERE action LIKE 'config.%'"
        ).fetchone()
        assert audit is not None and audit[0] >= 12
