"""Events whose opportunity has not arrived are held, at most so many keys per app."""

from __future__ import annotations

import os

import bytewax.operators as op
from builders import T0
from builders import event as _event
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from prometheus_client import generate_latest

from dataflows.metrics import WorkerMetrics
from dataflows.pipeline import build_flow
from mediation.rules.model import OrphanEvents, Policy
from mediation.rules.state import TOO_MANY_ORPHANS
from mediation.rules.ulid import encode_ulid
from mediation.settings import Topics
from mediation.wire import DeadLetterRecord, encode_event

TOPICS = Topics.with_prefix("test.")


def _orphan_message(app_id: str, offset: int) -> KafkaSourceMessage:
    key = encode_ulid(T0, os.urandom(10))
    event = _event(key, f"e{offset}", "loaded", 0, app_id=app_id)
    return KafkaSourceMessage(
        key.encode(), encode_event(event), topic=TOPICS.events, partition=0, offset=offset
    )


def test_an_app_over_its_held_orphan_keys_gets_dead_letters_and_others_are_unaffected() -> None:
    messages = [_orphan_message("flood", i) for i in range(5)]
    messages += [_orphan_message("quiet", 5 + i) for i in range(2)]
    metrics = WorkerMetrics(lambda: T0)
    out: list[object] = []

    def source(flow: Dataflow):  # type: ignore[no-untyped-def]
        raw = op.input("in", flow, TestingSource(messages))
        return raw, op.filter_map("no_input_errors", raw, lambda _m: None)

    run_main(
        build_flow(
            messages=source,
            record_sink=TestingSink(out),
            deadletter_sink=None,
            topics=TOPICS,
            policy=Policy(max_orphan_keys_per_app=3),
            clock_ms=lambda _partition=None: T0,
            drain_on_eof=False,  # keep them held: the gauge shows them
            metrics=metrics,
        )
    )
    letters = [item for item in out if isinstance(item, DeadLetterRecord)]
    assert sorted(letter.reason for letter in letters) == [TOO_MANY_ORPHANS] * 2
    assert {letter.app_id for letter in letters} == {"flood"}
    assert not [item for item in out if isinstance(item, OrphanEvents)]  # still held
    scrape = generate_latest(metrics.registry).decode()
    assert 'mediation_worker_held_orphan_keys{app_id="flood"} 3.0' in scrape
    assert 'mediation_worker_held_orphan_keys{app_id="quiet"} 2.0' in scrape
