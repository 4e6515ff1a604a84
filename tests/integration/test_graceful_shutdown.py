"""SIGTERM under load: every request the gateway answered 200 is on the broker.

A real gateway process (each HTTP server ``mediation api --server`` offers)
serves several clients posting ``/v1/requests`` as fast as they can; it
is sent SIGTERM while they do. The server stops taking connections,
lets requests in flight finish, then the app's shutdown flushes the
producer; the process exits (0, or by the signal uvicorn re-raises) with
nothing unflushed. Every
``opportunity_key`` answered 200 is then read back from the broker.
Bounded: at most ``MAX_REQUESTS`` answers, a deadline for each phase.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from mediation.settings import Settings
from mediation.sim.processes import free_port, mediation_command, running
from mediation.sim.seed import demo_config, new_app_key, seed_app

pytestmark = pytest.mark.integration

CLIENTS, BEFORE_SIGTERM, MAX_REQUESTS = 8, 200, 5000


class _Load:
    """``CLIENTS`` threads posting ``/v1/requests``; the keys answered 200 are kept."""

    def __init__(self, base: str, app_key: str):
        self._base, self._key = base, app_key
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.answered: list[str] = []
        self.other_statuses: list[int] = []
        self._threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _client(self) -> None:
        headers = {"X-App-Key": self._key}
        with httpx.Client(base_url=self._base, headers=headers, timeout=10) as client:
            while not self._stop.is_set() and len(self.answered) < MAX_REQUESTS:
                now = int(time.time() * 1000)
                request = {"placement_id": "interstitial_main", "device_id": "d", "ts_ms": now}
                try:
                    answer = client.post("/v1/requests", json=request)
                except httpx.HTTPError:  # the server is closing or gone: nothing was ACKed
                    self._stop.wait(0.05)
                    continue
                with self._lock:
                    if answer.status_code == 200:
                        self.answered.append(answer.json()["opportunity_key"])
                    else:
                        self.other_statuses.append(answer.status_code)


def _keys_on_broker(settings: Settings, topics: set[str], wanted: set[str]) -> set[str]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": "graceful-shutdown-reader",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    partitions = range(settings.kafka_partitions)
    consumer.assign([TopicPartition(topic, p, 0) for topic in topics for p in partitions])
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while not wanted <= seen and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.3):
            key = message.key() if message.error() is None else None
            if key is not None:
                seen.add(key.decode())
    consumer.close()
    return seen


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_sigterm_under_load_loses_no_acknowledged_request(
    settings: Settings, child_env: dict[str, str], tmp_path: Path, server: str
) -> None:
    key = new_app_key()
    seed_app(settings.database_url, "graceful", demo_config(), key)
    port = free_port()
    argv = mediation_command("api", "--port", str(port), "--server", server)
    env = dict(child_env, MEDIATION_LOG_LEVEL="INFO")  # the shutdown's own report
    log = tmp_path / "gateway.log"
    with running("gateway", argv, env, log) as gateway:
        base = f"http://127.0.0.1:{port}"
        gateway.wait_http(f"{base}/readyz", timeout_s=60)
        with _Load(base, key) as load:
            deadline = time.monotonic() + 60
            while len(load.answered) < BEFORE_SIGTERM and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(load.answered) >= BEFORE_SIGTERM, gateway.tail()
            # Requests are in flight now; the clients keep sending during the shutdown.
            exit_code = gateway.stop(signal.SIGTERM, timeout_s=30)
    # uvicorn re-raises the signal once it has shut down; Granian exits 0.
    assert exit_code == (-signal.SIGTERM if server == "uvicorn" else 0), gateway.tail()
    assert "gateway stopped (0 message(s) unflushed)" in log.read_text(), gateway.tail()
    assert set(load.other_statuses) <= {503}, load.other_statuses  # never a 5xx of the server
    answered = set(load.answered)
    assert len(answered) == len(load.answered)
    topics = {settings.topics_for(k).opportunities for k in answered}
    missing = answered - _keys_on_broker(settings, topics, answered)
    assert not missing, f"{len(missing)} of {len(answered)} answered requests not on the broker"
