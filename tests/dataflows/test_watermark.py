"""Closing follows the inputs' event time, so catching up on a backlog is safe."""

from __future__ import annotations

import os

from builders import T0, opportunity
from bytewax.connectors.kafka import KafkaSourceMessage

from dataflows.closing import ClosingBucket
from dataflows.metrics import WorkerMetrics
from dataflows.watermark import InputWatermark
from mediation.rules.model import ClosedOpportunity, Event, Policy
from mediation.rules.ulid import encode_ulid


class _Wall:
    def __init__(self, now: int):
        self.now = now

    def __call__(self, _partition: int | None = None) -> int:
        return self.now


def _loaded(key: str) -> Event:
    """A ``loaded`` event 5 ms after the opportunity."""
    return Event(
        event_id="e",
        app_id="app",
        opportunity_key=key,
        type="loaded",
        ts_ms=T0 + 5,
        server_ts_ms=T0 + 5,
        received_at_ms=T0 + 5,
        source_id="net_a",
    )


def _message(
    partition: int, timestamp: int, offset: int = 0, topic: str = "t"
) -> KafkaSourceMessage:
    return KafkaSourceMessage(
        b"k", b"v", topic=topic, partition=partition, offset=offset, timestamp=(1, timestamp)
    )


def test_live_partitions_follow_the_wall_clock_minus_their_lag() -> None:
    wall = _Wall(T0)
    mark = InputWatermark(wall_ms=wall, reuse_ms=0)
    assert mark.now_ms() == T0  # nothing read yet: the wall clock
    mark.observe(_message(0, T0 - 30))  # read 30 ms after it was produced
    wall.now = T0 + 1_000
    assert mark.now_ms() == T0 + 1_000 - 30


def test_a_partition_catching_up_holds_the_watermark_at_what_it_has_read() -> None:
    wall = _Wall(T0 + 3_600_000)  # an hour of backlog
    mark = InputWatermark(wall_ms=wall, reuse_ms=0)
    mark.observe(_message(0, wall.now - 10))  # live partition
    mark.observe(_message(1, T0))  # backlog partition
    assert mark.now_ms() == T0
    mark.observe(_message(1, T0 + 60_000))
    assert mark.now_ms() == T0 + 60_000


def test_a_drained_partition_stops_holding_the_watermark_back() -> None:
    wall = _Wall(T0 + 3_600_000)
    mark = InputWatermark(idle_ms=10_000, wall_ms=wall, reuse_ms=0)
    mark.observe(_message(1, T0))  # the last (old) message of a quiet partition
    assert mark.now_ms() == T0
    wall.now += 10_001
    assert mark.now_ms() == wall.now


def test_a_backlog_read_to_the_end_of_its_log_follows_the_wall_clock() -> None:
    wall = _Wall(T0 + 3_600_000)
    highs = {("t", 0): 100}
    mark = InputWatermark(wall_ms=wall, high_watermarks=lambda: highs, reuse_ms=0)
    mark.observe(_message(0, T0, offset=98))
    assert mark.now_ms() == T0  # one message still to read
    mark.observe(_message(0, T0 + 5, offset=99))
    # Caught up; what was read last gets settle_ms to reach the closing step.
    assert mark.now_ms() == T0 + 5
    wall.now += 1_000
    assert mark.now_ms() == wall.now  # no need to wait for idleness
    assert mark.positions() == {("t", 0): 100}


def test_the_watermark_waits_for_what_was_read_to_reach_the_closing_step() -> None:
    wall = _Wall(T0 + 3_600_000)
    batches = [0, 0]  # records sent to the closing step; records applied there
    mark = InputWatermark(
        wall_ms=wall, reuse_ms=0, flight=lambda _partition: (batches[0], batches[1])
    )
    mark.observe(_message(0, T0, offset=1))
    assert mark.now_ms() == T0
    batches[0] += 2  # two more batches decoded and handed over...
    mark.observe(_message(0, T0 + 500, offset=4))
    assert mark.now_ms() == T0  # ...not complete yet: T0 + 500 waits
    batches[1] += 1
    assert mark.now_ms() == T0
    batches[1] += 1
    assert mark.now_ms() == T0 + 500


def test_a_drained_partition_follows_the_wall_clock_once_all_it_read_has_arrived() -> None:
    wall = _Wall(T0 + 3_600_000)
    highs = {("t", 0): 100}
    batches = [5, 2]
    mark = InputWatermark(
        wall_ms=wall,
        high_watermarks=lambda: highs,
        reuse_ms=0,
        flight=lambda _partition: (batches[0], batches[1]),
    )
    mark.observe(_message(0, T0 + 5, offset=99))
    wall.now += 5_000  # settled long ago, but three records are still on their way
    assert mark.now_ms() < T0
    batches[1] = 5
    assert mark.now_ms() == wall.now


def test_before_the_first_high_watermark_poll_the_watermark_holds() -> None:
    """Just started: whether any partition holds data is not known yet."""
    wall = _Wall(T0)
    highs: dict[tuple[str, int], int] = {}
    mark = InputWatermark(wall_ms=wall, high_watermarks=lambda: highs, reuse_ms=0)
    assert mark.now_ms() < T0 - 3_600_000  # not the wall clock: nothing may close
    highs[("t", 0)] = 0  # polled: the partition is empty
    assert mark.now_ms() == wall.now


def test_the_watermark_is_reused_for_a_few_milliseconds() -> None:
    wall = _Wall(T0)
    mark = InputWatermark(wall_ms=wall, reuse_ms=5)
    mark.observe(_message(0, T0 - 30))
    first = mark.now_ms()
    wall.now += 4
    assert mark.now_ms() == first  # reused
    wall.now += 1
    assert mark.now_ms() == wall.now - 30  # recomputed


def test_pace_is_event_time_per_wall_time() -> None:
    wall = _Wall(T0 + 3_600_000)
    mark = InputWatermark(wall_ms=wall, reuse_ms=0)
    mark.observe(_message(0, T0, offset=1))
    assert mark.now_ms() == T0 and mark.pace() == 1.0  # no measurement yet
    wall.now += 1_000
    mark.observe(_message(0, T0 + 100, offset=2))
    mark.now_ms()
    assert mark.pace() == 0.1  # catching up: 100 ms of event time per second


def test_a_stalled_backlog_holds_the_watermark_however_long_it_stalls() -> None:
    # Postgres away: the dataflow holds, nothing is read; closing must hold too.
    wall = _Wall(T0 + 3_600_000)
    highs = {("t", 0): 1_000}
    mark = InputWatermark(idle_ms=10_000, wall_ms=wall, high_watermarks=lambda: highs)
    mark.observe(_message(0, T0, offset=10))
    wall.now += 600_000
    assert mark.now_ms() == T0


def test_partition_lag_metric_is_high_watermark_minus_position() -> None:
    mark = InputWatermark(wall_ms=_Wall(T0), high_watermarks=lambda: {("t", 0): 50})
    mark.observe(_message(0, T0, offset=9))
    metrics = WorkerMetrics(mark.now_ms, positions=mark.positions, highs=lambda: {("t", 0): 50})
    value = metrics.registry.get_sample_value(
        "mediation_worker_partition_lag_messages", {"topic": "t", "partition": "0"}
    )
    assert value == 40


def test_backlog_opportunity_waits_for_event_time_not_the_wall_clock() -> None:
    key = encode_ulid(T0, os.urandom(10))
    event_time = _Wall(T0)  # the watermark: the backlog's time
    wall = _Wall(T0 + 3_600_000)  # an hour later on the wall
    logic = ClosingBucket(None, Policy(allowed_lateness_ms=1_000), event_time, False, wall)
    logic.on_batch([opportunity(key)])
    # Bytewax would wake this bucket at once on the wall clock; it must neither
    # close it nor ask to be woken again immediately.
    outputs, _discard = logic.on_notify()
    assert list(outputs) == []
    wake_ms = int(logic.notify_at().timestamp() * 1000)  # type: ignore[union-attr]
    assert wake_ms >= wall.now + 50
    # Its event arrives from the backlog, then event time passes the close.
    logic.on_batch([_loaded(key)])
    event_time.now = T0 + 11_001
    (closed,), _discard = logic.on_notify()
    assert isinstance(closed, ClosedOpportunity)
    assert closed.archive.outcome == "loaded"


def test_state_counts_follow_open_close_and_forget() -> None:
    key = encode_ulid(T0, os.urandom(10))
    clock = _Wall(T0)
    metrics = WorkerMetrics(clock)
    policy = Policy(allowed_lateness_ms=1_000, tombstone_ttl_ms=60_000)
    logic = ClosingBucket(None, policy, clock, False, clock, counts=metrics.state)

    def gauge(name: str) -> float | None:
        return metrics.registry.get_sample_value(f"mediation_worker_{name}")

    logic.on_batch([opportunity(key)])
    logic.on_batch([_loaded(key)])
    assert (gauge("open_opportunities"), gauge("open_events"), gauge("tombstones")) == (1, 1, 0)
    clock.now = T0 + 11_001
    logic.on_notify()  # closes: open -> tombstone
    assert (gauge("open_opportunities"), gauge("open_events"), gauge("tombstones")) == (0, 0, 1)
    clock.now += 60_000
    logic.on_notify()  # forgotten
    assert gauge("tombstones") == 0


def test_just_started_a_partition_with_data_that_delivered_nothing_holds_the_watermark() -> None:
    wall = _Wall(T0)
    highs = {("t", 0): 10, ("t", 1): 10}
    mark = InputWatermark(idle_ms=10_000, wall_ms=wall, high_watermarks=lambda: highs, reuse_ms=0)
    mark.observe(_message(0, T0 - 60_000, offset=9))  # partition 0 read to its end
    assert mark.now_ms() < T0 - 60_000  # partition 1 may still be warming up, with older data
    mark.observe(_message(1, T0 - 60_000, offset=9))
    assert mark.now_ms() == T0 - 60_000  # both read to the end, settling
    wall.now = T0 + 1_000
    assert mark.now_ms() == wall.now
    highs[("t", 2)] = 5  # a partition this process never reads...
    wall.now = T0 + 10_001
    assert mark.now_ms() == wall.now  # ...holds only for the first idle_ms


def test_an_assigned_partition_with_data_holds_until_it_delivers_however_long() -> None:
    wall = _Wall(T0)
    highs = {("t", 0): 10, ("t", 1): 10, ("t", 2): 7, ("t", 3): 4}
    lows = {("t", 3): 4}  # retention emptied partition 3
    mark = InputWatermark(
        wall_ms=wall, high_watermarks=lambda: highs, low_watermarks=lambda: lows, reuse_ms=0
    )
    mark.assign(("t", 0), 0)
    mark.assign(("t", 1), 0)
    mark.assign(("t", 2), 7)  # resumed at its end: nothing to wait for
    mark.assign(("t", 3), 0)  # nothing left in the log
    mark.observe(_message(0, T0 - 60_000, offset=3))
    wall.now = T0 + 600_000  # long past any idle timeout
    assert mark.now_ms() == 0  # partition 1 has data and has delivered nothing
    mark.observe(_message(1, T0 - 50_000, offset=3))
    assert mark.now_ms() == T0 - 60_000  # now the minimum of what was read


def test_each_partition_closes_on_its_own_event_time() -> None:
    """Partition p's clock is the minimum over p's two topic partitions, and no other's."""
    wall = _Wall(T0 + 3_600_000)
    highs = {("opps", 0): 100, ("events", 0): 100, ("opps", 1): 100, ("events", 1): 100}
    mark = InputWatermark(wall_ms=wall, high_watermarks=lambda: highs, reuse_ms=0)
    for topic in ("opps", "events"):
        mark.assign((topic, 0), 0)
        mark.assign((topic, 1), 0)
    mark.observe(_message(0, T0 + 9_000, offset=9, topic="opps"))
    mark.observe(_message(0, T0 + 5_000, offset=9, topic="events"))
    assert mark.now_ms(0) == T0 + 5_000  # its events topic is behind its opportunities
    assert mark.now_ms(1) == 0  # partition 1 has data and delivered nothing: it holds...
    assert mark.now_ms() == 0  # (the process's overall clock is the slowest)
    mark.observe(_message(1, T0, offset=3, topic="opps"))
    mark.observe(_message(1, T0 + 1_000, offset=3, topic="events"))
    assert mark.now_ms(1) == T0  # ...and once read, it moves on its own
    assert mark.now_ms(0) == T0 + 5_000  # a partition far behind holds only itself


def test_the_worker_says_how_many_partitions_it_owns() -> None:
    metrics = WorkerMetrics(_Wall(T0), owned=(3, 24))
    assert metrics.registry.get_sample_value("mediation_worker_partitions_owned") == 3
    assert metrics.registry.get_sample_value("mediation_worker_input_partitions") == 24


def test_a_live_partition_with_data_waiting_holds_while_reading_stalls() -> None:
    # A saturated worker stops reading for a while; the opportunity still
    # unread there must not find its events orphaned when reading resumes.
    wall = _Wall(T0)
    highs = {("t", 0): 11, ("t", 1): 1}
    mark = InputWatermark(wall_ms=wall, high_watermarks=lambda: highs, reuse_ms=0)
    mark.observe(_message(0, T0 - 5, offset=9))  # read live, one message still waiting
    mark.observe(_message(1, T0 - 5, offset=0))  # read to the end
    wall.now += 30_000
    assert mark.now_ms() == T0 - 5
    mark.observe(_message(0, T0 + 29_990, offset=10))  # reading resumes, catches up
    assert mark.now_ms() == T0 + 29_990
    wall.now += 1_000  # both read to the end and settled: the wall clock again
    assert mark.now_ms() == wall.now


def test_read_to_the_end_counts_only_on_a_fresh_poll_made_after_the_read() -> None:
    # A starved poller keeps old high watermarks: what was read past them
    # says nothing about what arrived since, so the partition holds.
    wall = _Wall(T0)
    highs = {("t", 0): 10}
    polled = {"at": T0 - 500}
    mark = InputWatermark(
        wall_ms=wall, high_watermarks=lambda: highs, highs_polled_at=lambda: polled["at"],
        reuse_ms=0,
    )  # fmt: skip
    mark.observe(_message(0, T0 - 10, offset=9))  # read at T0, after the poll
    wall.now += 5_000
    assert mark.now_ms() == T0 - 10  # no poll since the read: hold
    polled["at"] = wall.now - 3_500  # a poll after the read, but stale by now
    assert mark.now_ms() == T0 - 10
    polled["at"] = wall.now - 200  # fresh, after the read, still at the end
    assert mark.now_ms() == polled["at"]  # as of that poll


def test_a_partition_read_to_its_end_moves_with_the_polls_not_the_wall_clock() -> None:
    # Read to the end as of a poll; messages arriving after it may sit unread
    # on a worker starved of CPU for longer than the allowed lateness: event
    # time must not pass them (it followed the wall clock until the poll
    # went stale, 3 s, and closed their opportunities without them).
    wall = _Wall(T0)
    highs = {("t", 0): 10}
    polled = {"at": T0}
    mark = InputWatermark(
        wall_ms=wall, high_watermarks=lambda: highs, highs_polled_at=lambda: polled["at"],
        reuse_ms=0, settle_ms=0,
    )  # fmt: skip
    mark.observe(_message(0, T0 - 5, offset=9))
    polled["at"] = T0 + 100  # the last poll: nothing past offset 10 then
    wall.now = T0 + 2_900  # polls starved since; the poll is not stale yet
    assert mark.now_ms() == T0 + 100
