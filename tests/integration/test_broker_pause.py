"""ACK means durably accepted: a paused broker gets 503s, never false ACKs.

A private broker (same binary as the dev stack, its own port) is paused with
SIGSTOP, which keeps its data. While it is paused the gateway cannot get
confirmations, so it answers 503 + Retry-After; the SDK resends; after
SIGCONT every event that was ever answered as accepted is on the topic
exactly once: the resent events wait for their first, late-confirmed send
instead of being produced again (``gateway/resends.py``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.devstack import broker_command, wait_port
from mediation.processes import free_port
from mediation.rules.ulid import encode_ulid
from mediation.seed import demo_config, new_app_key, seed_app
from mediation.settings import Settings
from mediation.topics import ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with open(tmp_path / "broker.log", "wb") as log:
        proc = subprocess.Popen(
            broker_command("127.0.0.1", port),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_port("private broker", "127.0.0.1", port, 20, tmp_path / "broker.log")
        yield f"127.0.0.1:{port}|{proc.pid}"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(10)


def _events(key: str, first: int, count: int) -> list[dict[str, object]]:
    now = int(time.time() * 1000)
    return [
        {"event_id": f"p{i}", "opportunity_key": key, "type": "loaded", "ts": now}
        for i in range(first, first + count)
    ]


def _batch(events: list[dict[str, object]]) -> bytes:
    # Like an SDK: a resend carries the same events and a new sent_at.
    return orjson.dumps({"sent_at": int(time.time() * 1000), "sdk": "pause/1", "events": events})


def _topic_event_ids(bootstrap: str, topic: str, partitions: int) -> Counter[str]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "pause-test",
            "fetch.wait.max.ms": 10,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    # By position: a re-fetch of the same offset is not a second copy.
    seen: dict[tuple[int, int], str] = {}
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        for message in consumer.consume(500, 0.3):
            if message.error() is None:
                event_id = orjson.loads(message.value())["event_id"]
                seen[(message.partition(), message.offset())] = event_id
    consumer.close()
    return Counter(seen.values())


def test_paused_broker_gets_503_and_every_accepted_event_lands(
    settings: Settings, private_broker: str
) -> None:
    bootstrap, pid_text = private_broker.split("|")
    broker_pid = int(pid_text)
    paused = replace(settings, kafka_bootstrap_servers=bootstrap, produce_timeout_ms=800)
    ensure_topics(bootstrap, paused.topics.all(), partitions=2)
    key_for_app = new_app_key()
    seed_app(settings.database_url, "pause", demo_config(), key_for_app)
    key = encode_ulid(int(time.time() * 1000), os.urandom(10))
    headers = {"X-App-Key": key_for_app}
    accepted: set[str] = set()
    first_events, paused_events = _events(key, 0, 20), _events(key, 20, 20)

    with TestClient(create_app(paused)) as client:
        # A fresh idempotent producer needs a moment to register with the broker.
        for _attempt in range(20):
            ok = client.post("/v1/events", content=_batch(first_events), headers=headers)
            if ok.status_code == 200:
                break
            time.sleep(0.5)
        assert ok.status_code == 200 and ok.json()["accepted"] == 20
        accepted |= {f"p{i}" for i in range(20)}

        os.kill(broker_pid, signal.SIGSTOP)
        try:
            during = client.post("/v1/events", content=_batch(paused_events), headers=headers)
            assert during.status_code == 503
            assert during.headers["retry-after"] == "1"
            assert during.json()["error"]["code"] == "broker_unavailable"
        finally:
            os.kill(broker_pid, signal.SIGCONT)

        # The SDK resends the refused batch until it is acknowledged.
        for _attempt in range(20):
            again = client.post("/v1/events", content=_batch(paused_events), headers=headers)
            if again.status_code == 200:
                accepted |= {f"p{i}" for i in range(20, 40)}
                break
            time.sleep(float(again.headers.get("retry-after", "1")))
        else:
            pytest.fail("the resent batch was never acknowledged after the broker resumed")
        metrics = client.get("/metrics").text
        # The paused batch at least (the warm-up may have timed out too).
        reused = re.search(r"^mediation_events_resent_not_reproduced_total (\S+)$", metrics, re.M)
        assert reused is not None and float(reused.group(1)) >= 20

    on_topic = _topic_event_ids(bootstrap, paused.topics.events, 2)
    assert accepted <= set(on_topic), sorted(accepted - set(on_topic))
    assert set(on_topic) == accepted
    assert max(on_topic.values()) == 1, {k: n for k, n in on_topic.items() if n > 1}
