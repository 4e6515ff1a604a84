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
from mediation.rules.ulid import encode_ulid
from mediation.settings import Settings
from mediation.sim.devstack import broker_command, wait_port
from mediation.sim.processes import free_port
from mediation.sim.seed import demo_config, new_app_key, seed_app
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


def _gateway_on(
    settings: Settings, private_broker: str, app_id: str
) -> tuple[Settings, int, dict[str, str], str]:
    """Settings on the private broker (short confirmation timeout), the broker's pid,
    a new app's headers, and an opportunity key minted now."""
    bootstrap, pid_text = private_broker.split("|")
    paused = replace(settings, kafka_bootstrap_servers=bootstrap, produce_timeout_ms=800)
    ensure_topics(bootstrap, paused.topics.all(), partitions=2)
    app_key = new_app_key()
    seed_app(settings.database_url, app_id, demo_config(), app_key)
    key = encode_ulid(int(time.time() * 1000), os.urandom(10))
    return paused, int(pid_text), {"X-App-Key": app_key}, key


def test_paused_broker_gets_503_and_every_accepted_event_lands(
    settings: Settings, private_broker: str
) -> None:
    paused, broker_pid, headers, key = _gateway_on(settings, private_broker, "pause")
    bootstrap = paused.kafka_bootstrap_servers
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


PAUSE_S = 35.0  # longer than the producer's message.timeout.ms (30 s)


def test_a_broker_stop_longer_than_the_message_timeout_loses_and_doubles_nothing(
    settings: Settings, private_broker: str
) -> None:
    """The seed's fault: the broker stopped (SIGSTOP) for over 30 s while an SDK sends a burst.

    The SDK sends 60 batches of 10 events, resending each on 503 after
    Retry-After as real SDKs do; the broker stops after the 10th batch and
    resumes 35 s later. The messages that timed out meanwhile make the
    idempotent producer bump its epoch, which this broker answers by
    fencing it: the gateway must replace its producer and carry on. Every
    batch is ACKed in the end and the topic holds every ACKed event. A
    message that timed out may still have landed (it was in flight when the
    broker stopped), and its resend went out on the new producer: only the
    batch in flight at the stop may be on the topic twice, which the
    dataflow's dedup on (app_id, event_id) absorbs (``docs/contracts.md``
    section 3).
    """
    paused, broker_pid, headers, key = _gateway_on(settings, private_broker, "pause35")
    bootstrap = paused.kafka_bootstrap_servers
    batches = [_events(key, 10 * n, 10) for n in range(60)]
    refused, stopped_at, resumed_at = 0, 0.0, 0.0
    accepted: set[str] = set()
    with TestClient(create_app(paused)) as client:
        for n, events in enumerate(batches):
            if n == 10:
                os.kill(broker_pid, signal.SIGSTOP)
                stopped_at = time.monotonic()
            deadline = time.monotonic() + PAUSE_S + 60
            while True:
                if stopped_at and not resumed_at and time.monotonic() - stopped_at >= PAUSE_S:
                    os.kill(broker_pid, signal.SIGCONT)
                    resumed_at = time.monotonic()
                answer = client.post("/v1/events", content=_batch(events), headers=headers)
                if answer.status_code == 200:
                    assert answer.json()["accepted"] == 10
                    accepted |= {str(e["event_id"]) for e in events}
                    break
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"]["code"] == "broker_unavailable"
                refused += 1
                assert time.monotonic() < deadline, f"batch {n} never acknowledged: {answer.text}"
                time.sleep(float(answer.headers.get("retry-after", "1")))
    assert resumed_at and resumed_at - stopped_at >= PAUSE_S
    assert refused >= 10  # the stop was felt: 503s, not false ACKs
    assert len(accepted) == 600
    on_topic = _topic_event_ids(bootstrap, paused.topics.events, 2)
    assert set(on_topic) == accepted  # nothing ACKed is missing
    in_flight_at_stop = {str(e["event_id"]) for e in batches[10]}
    doubled = {event_id for event_id, n in on_topic.items() if n > 1}
    assert doubled <= in_flight_at_stop and max(on_topic.values()) <= 2, doubled
