"""Closing follows the inputs' event time, so catching up on a backlog is safe."""

from __future__ import annotations

import os

from builders import T0, opportunity
from bytewax.connectors.kafka import KafkaSourceMessage

from dataflows.closing import ClosingLogic
from dataflows.watermark import InputWatermark
from mediation.rules.model import ClosedOpportunity, Event, Policy
from mediation.rules.ulid import encode_ulid


class _Wall:
    def __init__(self, now: int):
        self.now = now

    def __call__(self) -> int:
        return self.now


def _message(partition: int, timestamp: int) -> KafkaSourceMessage:
    return KafkaSourceMessage(
        b"k", b"v", topic="t", partition=partition, offset=0, timestamp=(1, timestamp)
    )


def test_live_partitions_follow_the_wall_clock_minus_their_lag() -> None:
    wall = _Wall(T0)
    mark = InputWatermark(wall_ms=wall)
    assert mark.now_ms() == T0  # nothing read yet: the wall clock
    mark.observe(_message(0, T0 - 30))  # read 30 ms after it was produced
    wall.now = T0 + 1_000
    assert mark.now_ms() == T0 + 1_000 - 30


def test_a_partition_catching_up_holds_the_watermark_at_what_it_has_read() -> None:
    wall = _Wall(T0 + 3_600_000)  # an hour of backlog
    mark = InputWatermark(wall_ms=wall)
    mark.observe(_message(0, wall.now - 10))  # live partition
    mark.observe(_message(1, T0))  # backlog partition
    assert mark.now_ms() == T0
    mark.observe(_message(1, T0 + 60_000))
    assert mark.now_ms() == T0 + 60_000


def test_a_drained_partition_stops_holding_the_watermark_back() -> None:
    wall = _Wall(T0 + 3_600_000)
    mark = InputWatermark(idle_ms=10_000, wall_ms=wall)
    mark.observe(_message(1, T0))  # the last (old) message of a quiet partition
    assert mark.now_ms() == T0
    wall.now += 10_001
    assert mark.now_ms() == wall.now


def test_backlog_opportunity_waits_for_event_time_not_the_wall_clock() -> None:
    key = encode_ulid(T0, os.urandom(10))
    event_time = _Wall(T0)  # the watermark: the backlog's time
    wall = _Wall(T0 + 3_600_000)  # an hour later on the wall
    logic = ClosingLogic(None, Policy(allowed_lateness_ms=1_000), event_time, False, wall)
    logic.on_item(opportunity(key))
    # Bytewax would wake this key at once on the wall clock; it must neither
    # close it nor ask to be woken again immediately.
    outputs, _discard = logic.on_notify()
    assert list(outputs) == []
    wake_ms = int(logic.notify_at().timestamp() * 1000)  # type: ignore[union-attr]
    assert wake_ms >= wall.now + 50
    # Its event arrives from the backlog, then event time passes the close.
    logic.on_item(
        Event(
            event_id="e",
            app_id="app",
            opportunity_key=key,
            type="loaded",
            ts_ms=T0 + 5,
            server_ts_ms=T0 + 5,
            received_at_ms=T0 + 5,
            source_id="net_a",
        )
    )
    event_time.now = T0 + 11_001
    (closed,), _discard = logic.on_notify()
    assert isinstance(closed, ClosedOpportunity)
    assert closed.archive.outcome == "loaded"
