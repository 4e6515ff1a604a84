"""The pipelined sink: writes leave the worker thread, and a snapshot waits for them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from sinks.pipelined import PipelinedSink
from sinks.positions import PositionMark


@dataclass(frozen=True)
class Item:
    opportunity_key: str


class SlowWriter:
    def __init__(
        self, delay_s: float = 0.05, fail_on: int | None = None, log: list[Any] | None = None
    ):
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.written: list[list[Any]] = []
        self.closed = False
        self.threads: set[str] = set()
        self.log = log if log is not None else []  # shared by writers: the order of commits

    def write(self, items: list[Any]) -> None:
        time.sleep(self.delay_s)
        self.threads.add(threading.current_thread().name)
        if self.fail_on is not None and len(self.written) + 1 == self.fail_on:
            raise ValueError("refused")
        self.written.append(items)
        self.log.extend(items)

    def record_positions(self, marks: list[PositionMark]) -> None:
        self.log.extend(marks)

    def close(self) -> None:
        self.closed = True


def test_write_batch_returns_before_the_write_and_snapshot_waits_for_it() -> None:
    writer = SlowWriter(delay_s=0.2)
    partition = PipelinedSink(lambda: writer, writers=1).build_part("pg", "writers", None)
    started = time.monotonic()
    partition.write_batch([Item("a"), Item("b")])
    partition.write_batch([Item("c")])
    assert time.monotonic() - started < 0.15  # handed over, not written yet
    partition.snapshot()  # the epoch may be committed only now
    assert writer.written == [[Item("a"), Item("b")], [Item("c")]]
    assert threading.current_thread().name not in writer.threads
    partition.close()
    assert writer.closed


def test_a_writer_failure_stops_the_dataflow_at_the_next_call() -> None:
    writer = SlowWriter(delay_s=0, fail_on=1)
    partition = PipelinedSink(lambda: writer, writers=1).build_part("pg", "writers", None)
    partition.write_batch([Item("bad")])
    with pytest.raises(RuntimeError, match="Postgres writer failed"):
        partition.snapshot()
    with pytest.raises(RuntimeError):
        partition.write_batch([Item("more")])
    assert writer.written == []  # nothing after a failure


def test_items_are_spread_over_writers_by_opportunity() -> None:
    writers: list[SlowWriter] = []

    def new_writer() -> SlowWriter:
        writers.append(SlowWriter(delay_s=0))
        return writers[-1]

    sink = PipelinedSink(new_writer, writers=3)
    assert sink.list_parts() == ["writers"]  # one Bytewax partition: this process's
    partition = sink.build_part("pg", "writers", None)
    keys = [f"01KEY{i:04d}" for i in range(60)]
    partition.write_batch([Item(key) for key in keys])
    partition.write_batch([Item(key) for key in keys])
    partition.snapshot()
    partition.close()
    assert all(writer.written for writer in writers)  # every writer has a share
    by_writer = [{item.opportunity_key for batch in w.written for item in batch} for w in writers]
    assert sum(len(keys) for keys in by_writer) == 60  # one key, one writer
    with pytest.raises(ValueError, match="at least 1"):
        PipelinedSink(SlowWriter, writers=0)


def test_a_position_mark_is_recorded_once_after_every_write_before_it() -> None:
    log: list[Any] = []
    delays = iter([0.3, 0.0])  # the first writer is slow
    sink = PipelinedSink(lambda: SlowWriter(next(delays), log=log), writers=2)
    partition = sink.build_part("pg", "writers", None)
    keys = [f"01KEY{i:04d}" for i in range(20)]
    mark = PositionMark(0, {"opportunities": 10, "events": 30})
    partition.write_batch([*(Item(key) for key in keys), mark])
    partition.snapshot()
    partition.close()
    assert log.count(mark) == 1
    assert log[-1] == mark  # after both writers' items, however slow one was
