"""Adding partitions: a new topic generation, the previous one drained (docs/operations.md).

The previous generation has 2 partitions, the new one 6. The gateway runs
with ``KAFKA_TOPIC_PREFIX`` = the new generation and
``MEDIATION_PREVIOUS_TOPIC_PREFIX`` = the previous one until a moment T
inside the traffic: opportunities minted before T, and every event of
theirs (even those sent after T), go to the previous generation's topics;
later ones to the new. One worker per generation closes them. Every
opportunity is archived once, equal to the rules, and no event is late:
no opportunity was split across generations.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace

import pytest
from confluent_kafka import Consumer, TopicPartition

from mediation.rules.ulid import ulid_time_ms
from mediation.settings import Settings
from mediation.sim.processes import free_port, mediation_command, running
from mediation.sim.seed import demo_config, new_app_key, seed_app
from mediation.sim.simulate import SimulationConfig, run_simulation
from mediation.sim.verify import count_archived, reconcile
from mediation.topics import ensure_topics
from storage.db import connect

pytestmark = pytest.mark.integration

CLOSURE_WINDOW_MS, GRACE_MS, LATENESS_MS = 3_000, 1_000, 1_000


def _key_times(settings: Settings, topic: str, partitions: int) -> list[tuple[int, int]]:
    """(the key's ULID time, the broker's timestamp) of every message in ``topic``."""
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "generations"}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    times: list[tuple[int, int]] = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        for message in consumer.consume(500, 0.3):
            if message.error() is None and message.key():
                with contextlib.suppress(ValueError):
                    times.append((ulid_time_ms(message.key().decode()), message.timestamp()[1]))
    consumer.close()
    return times


def test_a_new_generation_takes_new_opportunities_while_the_previous_drains(
    settings: Settings,
) -> None:
    previous = settings  # 2 partitions (the fixture's topics)
    new = replace(settings, topic_prefix=f"{settings.topic_prefix}g2.", kafka_partitions=6)
    ensure_topics(new.kafka_bootstrap_servers, new.topics.all(), partitions=6)
    app_key = new_app_key()
    seed_app(settings.database_url, "demo", demo_config(CLOSURE_WINDOW_MS, GRACE_MS), app_key)
    knobs = {
        "MEDIATION_ALLOWED_LATENESS_MS": str(LATENESS_MS),
        "MEDIATION_DEFAULT_CLOSURE_WINDOW_MS": str(CLOSURE_WINDOW_MS),
        "MEDIATION_DEFAULT_GRACE_MS": str(GRACE_MS),
    }
    # T: far enough ahead for two workers and the gateway to start on a busy
    # machine; the traffic below then runs from readiness to 4 s past T, so it
    # spans T however long the start took.
    cutover_ms = int(time.time() * 1000) + 15_000
    gateway_env = {
        **new.child_env(),
        **knobs,
        "MEDIATION_PREVIOUS_TOPIC_PREFIX": f"{previous.topic_prefix}@{cutover_ms}",
    }
    port = free_port()
    logs = settings.data_dir / "logs"
    with contextlib.ExitStack() as stack:
        for name, generation in (("previous", previous), ("new", new)):
            metrics_port = free_port()
            worker = stack.enter_context(
                running(
                    f"worker-{name}",
                    mediation_command("worker", "--metrics-port", str(metrics_port)),
                    {**generation.child_env(), **knobs},
                    logs / f"worker-{name}.log",
                )
            )
            worker.wait_http(f"http://127.0.0.1:{metrics_port}/metrics", timeout_s=60)
        gateway = stack.enter_context(
            running("gateway", mediation_command("api", "--port", str(port)), gateway_env,
                    logs / "gateway.log")
        )  # fmt: skip
        gateway.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        before_cutover_s = cutover_ms / 1000 - time.time()
        assert before_cutover_s > 1, "the gateway was ready only after the cutover"
        report = asyncio.run(
            run_simulation(
                SimulationConfig(
                    base_url=f"http://127.0.0.1:{port}",
                    app_key=app_key,
                    rate_rps=20,
                    duration_s=before_cutover_s + 4,
                    seed=21,
                    resend_share=0.2,
                )
            )
        )
        assert report.requests_ok == report.requests_sent > 0
        with connect(settings.database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 90
            while (
                count_archived(conn, report) < len(report.expectations)
                and time.monotonic() < deadline
            ):
                time.sleep(0.5)
            result = reconcile(conn, report)
            assert result.archived == result.opportunities == len(report.expectations)
            assert result.recompute_mismatches == []
            assert result.expectation_mismatches == []
            assert result.missing_event_ids == []
            late = conn.execute("SELECT count(*) FROM event_records WHERE late").fetchone()
            assert late == (0,)  # no opportunity was split across the generations

    old_events = _key_times(previous, previous.topics.events, 2)
    old = _key_times(previous, previous.topics.opportunities, 2) + old_events
    new_messages = _key_times(new, new.topics.opportunities, 6)
    new_messages += _key_times(new, new.topics.events, 6)
    assert old and new_messages  # traffic on both sides of T
    assert max(key for key, _at in old) < cutover_ms <= min(key for key, _at in new_messages)
    # Events of opportunities minted before T, received after it, went where those did.
    assert max(at for _key, at in old_events) >= cutover_ms
