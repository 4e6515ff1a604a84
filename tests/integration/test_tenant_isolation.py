"""Security, end to end: app B's write key cannot change what app A's opportunity closes into.

App B learns one of app A's opportunity keys and sends events for it with
its own key: an impression with a large revenue, a click and a reward,
before and after A's opportunity closes. The gateway accepts well-formed
events (it does not know who owns a key), but the event's app comes from
B's key, never from the body, and the dataflow refuses events whose app
does not own the opportunity: A's archive record holds only A's events,
and every one of B's events is a dead letter with reason
``opportunity_app_mismatch``.
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from mediation.processes import free_port, mediation_command, running
from mediation.seed import demo_config, new_app_key, seed_app
from mediation.settings import Settings
from storage.db import connect

pytestmark = pytest.mark.integration

CLOSURE_WINDOW_MS, GRACE_MS = 3_000, 1_000


Event = tuple[str, str, int]  # event id, type, revenue micros (0: none)


def _events(client: httpx.Client, key: str, opportunity: str, events: list[Event]) -> int:
    now = int(time.time() * 1000)
    items = []
    for event_id, kind, revenue in events:
        item = {"event_id": event_id, "opportunity_key": opportunity, "type": kind, "ts": now,
                "source_id": "net_delta"}  # fmt: skip
        if revenue:
            item |= {"revenue_micros": revenue, "currency": "USD"}
        items.append(item)
    batch = {"sdk": "t/1", "sent_at": now, "events": items}
    answer = client.post("/v1/events", json=batch, headers={"X-App-Key": key})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["accepted"])


def test_another_apps_key_cannot_change_an_opportunity(
    settings: Settings, child_env: dict[str, str]
) -> None:
    owner, intruder = new_app_key(), new_app_key()
    seed_app(settings.database_url, "owner", demo_config(CLOSURE_WINDOW_MS, GRACE_MS), owner)
    seed_app(settings.database_url, "intruder", demo_config(CLOSURE_WINDOW_MS, GRACE_MS), intruder)
    env = {**child_env, "MEDIATION_ALLOWED_LATENESS_MS": "1000",
           "MEDIATION_DEFAULT_CLOSURE_WINDOW_MS": str(CLOSURE_WINDOW_MS),
           "MEDIATION_DEFAULT_GRACE_MS": str(GRACE_MS)}  # fmt: skip
    port, logs = free_port(), settings.data_dir / "logs"
    worker_argv = mediation_command("worker", "-w", "1", "--metrics-port", str(free_port()))
    with (
        running(
            "worker", worker_argv, env, logs / "worker.log", first_signal=signal.SIGINT
        ) as worker,
        running(
            "gateway", mediation_command("api", "--port", str(port)), env, logs / "gateway.log"
        ) as gateway,  # fmt: skip
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        gateway.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        answer = client.post("/v1/requests", headers={"X-App-Key": owner}, json={
            "placement_id": "banner_home", "device_id": "d1", "ts_ms": int(time.time() * 1000),
            "context": {"country": "US", "os": "ios"}})  # fmt: skip
        assert answer.status_code == 200, answer.text
        key = answer.json()["opportunity_key"]
        assert (
            _events(client, owner, key, [("own-1", "loaded", 0), ("own-2", "impression", 700)]) == 2
        )
        # The intruder's events, with the app claimed in the body too.
        intruding = [("in-1", "impression", 9_999_999), ("in-2", "click", 0), ("in-3", "reward", 0)]
        assert _events(client, intruder, key, intruding) == 3
        with connect(settings.database_url, autocommit=True) as conn:
            archive = None
            deadline = time.monotonic() + 60
            while archive is None and time.monotonic() < deadline:
                archive = conn.execute(
                    "SELECT app_id, outcome, revenue_micros, rewarded, counts FROM archive_records "
                    "WHERE opportunity_key = %s", (key,)).fetchone()  # fmt: skip
                time.sleep(0.5)
            assert archive is not None, worker.tail()
            # After the close too: late events of another app are refused as well.
            assert _events(client, intruder, key, [("in-4", "impression", 1)]) == 1
            letters: list[tuple[str, str]] = []
            while len(letters) < 4 and time.monotonic() < deadline:
                letters = conn.execute(
                    "SELECT app_id, reason FROM dead_letters WHERE opportunity_key = %s",
                    (key,),
                ).fetchall()
                time.sleep(0.5)
            stored = conn.execute(
                "SELECT app_id, count(*) FROM event_records WHERE opportunity_key = %s "
                "GROUP BY app_id", (key,)).fetchall()  # fmt: skip
    assert archive == ("owner", "impressed", 700, False, {"loaded": 1, "impression": 1})
    assert sorted(letters) == [("intruder", "opportunity_app_mismatch")] * 4
    assert stored == [("owner", 2)]  # none of the intruder's events joined the opportunity
