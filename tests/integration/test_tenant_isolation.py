"""Security, end to end: app B's write key cannot change what app A's opportunity closes into.

App B learns one of app A's opportunity keys and sends events for it with
its own key: an impression with a large revenue, a click and a reward,
before and after A's opportunity closes. The gateway accepts well-formed
events (it does not know who owns a key), but the event's app comes from
B's key, never from the body, and the dataflow refuses events whose app
does not own the opportunity: A's archive record holds only A's events,
and every one of B's events is a dead letter with reason
``opportunity_app_mismatch``. The same holds once the worker has forgotten
the closed opportunity (its tombstone expired): the sink, not the worker,
then refuses the intruder's event, and the owner's resend of events that
were counted on time writes no amendment.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mediation.ops.status import read_worker
from mediation.rules.replay import ReplayRequest, Selection
from mediation.settings import Settings
from mediation.sim.processes import ChildProcess, free_port, mediation_command, running
from mediation.sim.seed import demo_config, new_app_key, seed_app
from replay.run import replay_results
from storage.cold import FileColdStore
from storage.db import connect

pytestmark = pytest.mark.integration

CLOSURE_WINDOW_MS, GRACE_MS = 3_000, 1_000


Event = tuple[str, str, int]  # event id, type, revenue micros (0: none)


@contextlib.contextmanager
def _stack(
    settings: Settings, child_env: dict[str, str], **env_extra: str
) -> Iterator[tuple[httpx.Client, ChildProcess, str, str, str]]:
    """A worker and a gateway for apps ``owner`` and ``intruder``: client, worker, its
    metrics URL and the two write keys."""
    owner, intruder = new_app_key(), new_app_key()
    seed_app(settings.database_url, "owner", demo_config(CLOSURE_WINDOW_MS, GRACE_MS), owner)
    seed_app(settings.database_url, "intruder", demo_config(CLOSURE_WINDOW_MS, GRACE_MS), intruder)
    env = {**child_env, "MEDIATION_ALLOWED_LATENESS_MS": "1000",
           "MEDIATION_DEFAULT_CLOSURE_WINDOW_MS": str(CLOSURE_WINDOW_MS),
           "MEDIATION_DEFAULT_GRACE_MS": str(GRACE_MS), **env_extra}  # fmt: skip
    port, metrics_port, logs = free_port(), free_port(), settings.data_dir / "logs"
    worker_argv = mediation_command("worker", "--metrics-port", str(metrics_port))
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
        yield client, worker, f"http://127.0.0.1:{metrics_port}/metrics", owner, intruder


def _request(client: httpx.Client, owner: str) -> str:
    answer = client.post("/v1/requests", headers={"X-App-Key": owner}, json={
        "placement_id": "banner_home", "device_id": "d1", "ts_ms": int(time.time() * 1000),
        "context": {"country": "US", "os": "ios"}})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return str(answer.json()["opportunity_key"])


def _events(
    client: httpx.Client, key: str, opportunity: str, events: list[Event], ts_ms: int = 0
) -> int:
    """Send ``events`` with ``key``, stamped ``ts_ms`` (0: now); how many were accepted."""
    now = ts_ms or int(time.time() * 1000)
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
    with _stack(settings, child_env) as (client, worker, _metrics, owner, intruder):
        key = _request(client, owner)
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


def _wait_for(what: str, found: Callable[[], object], worker: ChildProcess) -> None:
    deadline = time.monotonic() + 60
    while not found():
        assert time.monotonic() < deadline, f"no {what}:\n{worker.tail()}"
        time.sleep(0.5)


def test_another_apps_key_cannot_change_an_opportunity_the_worker_forgot(
    settings: Settings, child_env: dict[str, str], tmp_path: Path
) -> None:
    stack = _stack(settings, child_env, MEDIATION_TOMBSTONE_TTL_MS="1000")
    with (
        stack as (client, worker, metrics, owner, intruder),
        connect(settings.database_url, autocommit=True) as conn,
    ):
        key = _request(client, owner)
        on_time = [("own-1", "loaded", 0), ("own-2", "impression", 1_500)]
        sent_ms = int(time.time() * 1000)
        assert _events(client, owner, key, on_time, sent_ms) == 2
        _wait_for("archive", lambda: conn.execute(
            "SELECT 1 FROM archive_records WHERE opportunity_key = %s", (key,)).fetchone(),
            worker)  # fmt: skip
        _wait_for("forgetting", lambda: read_worker(metrics).values.get("tombstones") == 0, worker)
        # The worker no longer knows the key: both look like orphans to it.
        # One key, one partition, one writer thread: once the intruder's dead
        # letter is written, so is the resend sent before it.
        assert _events(client, owner, key, on_time, sent_ms) == 2  # the SDK resends its batch
        assert _events(client, intruder, key, [("in-1", "impression", 1_255)]) == 1
        _wait_for("dead letter", lambda: conn.execute(
            "SELECT 1 FROM dead_letters WHERE opportunity_key = %s", (key,)).fetchone(),
            worker)  # fmt: skip
        letters = conn.execute(
            "SELECT app_id, reason FROM dead_letters WHERE opportunity_key = %s", (key,)
        ).fetchall()
        stored = conn.execute(
            "SELECT app_id, event_id, late FROM event_records WHERE opportunity_key = %s "
            "ORDER BY event_id", (key,)).fetchall()  # fmt: skip
        amendments = conn.execute(
            "SELECT event_id, changes FROM amendment_records WHERE opportunity_key = %s", (key,)
        ).fetchall()
        (recomputed,) = replay_results(
            conn, FileColdStore(tmp_path), ReplayRequest(Selection.of_keys([key]), "recompute")
        )
    assert letters == [("intruder", "opportunity_app_mismatch")]
    assert stored == [("owner", "own-1", False), ("owner", "own-2", False)]
    assert amendments == []
    assert recomputed["changes"] == {}
    assert recomputed["recomputed"]["revenue_micros"] == 1_500
