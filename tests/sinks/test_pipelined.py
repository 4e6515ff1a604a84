"""The pipelined sink: writes leave the worker thread, and a snapshot waits for them."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from sinks.pipelined import PipelinedSink


class SlowWriter:
    def __init__(self, delay_s: float = 0.05, fail_on: int | None = None):
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.written: list[list[Any]] = []
        self.closed = False
        self.threads: set[str] = set()

    def write(self, items: list[Any]) -> None:
        time.sleep(self.delay_s)
        self.threads.add(threading.current_thread().name)
        if self.fail_on is not None and len(self.written) + 1 == self.fail_on:
            raise ValueError("refused")
        self.written.append(items)

    def close(self) -> None:
        self.closed = True


def test_write_batch_returns_before_the_write_and_snapshot_waits_for_it() -> None:
    writer = SlowWriter(delay_s=0.2)
    partition = PipelinedSink(lambda: writer, partitions=1).build_part("pg", "writer-0", None)
    started = time.monotonic()
    partition.write_batch([1, 2])
    partition.write_batch([3])
    assert time.monotonic() - started < 0.15  # handed over, not written yet
    partition.snapshot()  # the epoch may be committed only now
    assert writer.written == [[1, 2], [3]]
    assert threading.current_thread().name not in writer.threads
    partition.close()
    assert writer.closed


def test_a_writer_failure_stops_the_dataflow_at_the_next_call() -> None:
    writer = SlowWriter(delay_s=0, fail_on=1)
    partition = PipelinedSink(lambda: writer, partitions=1).build_part("pg", "writer-0", None)
    partition.write_batch(["bad"])
    with pytest.raises(RuntimeError, match="Postgres writer failed"):
        partition.snapshot()
    with pytest.raises(RuntimeError):
        partition.write_batch(["more"])
    assert writer.written == []  # nothing after a failure


def test_items_are_routed_to_partitions_by_key() -> None:
    sink = PipelinedSink(SlowWriter, partitions=3)
    assert sink.list_parts() == ["writer-0", "writer-1", "writer-2"]
    assert sink.part_fn("01ABC") == sink.part_fn("01ABC")  # stable across calls and processes
    with pytest.raises(ValueError, match="at least 1"):
        PipelinedSink(SlowWriter, partitions=0)
