"""Event-time progress of this process's Kafka inputs.

Closing must follow *event* time, not the wall clock: a worker catching up
on an hour of backlog reads opportunities whose close time passed long ago,
and if it closed them at once, their events (still further back in the
backlog) would arrive late, and events read before their opportunity would
become orphans. The worker's clock is therefore this watermark:

- per input partition, the broker timestamp of the last message read;
- a partition read live (its last message was fresh when read) advances
  with the wall clock; a partition still catching up only advances as it
  is read;
- a partition that delivered nothing for ``idle_ms`` is drained and ignored;
- the watermark is the minimum over the rest, never ahead of the wall clock.

Each process sees only its own partitions; with several processes a key's
events may be read elsewhere, so a long catch-up there can still produce
late events (replay recompute shows them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from bytewax.connectors.kafka import KafkaSourceMessage

from mediation.clock import now_ms

__all__ = ["InputWatermark"]


class InputWatermark:
    def __init__(
        self,
        idle_ms: int = 10_000,
        live_lag_ms: int = 2_000,
        wall_ms: Callable[[], int] = now_ms,
    ):
        self._idle_ms = idle_ms
        self._live_lag_ms = live_lag_ms
        self._wall_ms = wall_ms
        # (topic, partition) -> (latest broker timestamp, wall time it was read)
        self._latest: dict[tuple[str | None, int | None], tuple[int, int]] = {}
        self._lock = threading.Lock()  # Bytewax workers of one process are threads

    def observe(self, message: KafkaSourceMessage[bytes | None, bytes | None]) -> None:
        if message.timestamp is None or message.timestamp[1] <= 0:
            return
        timestamp = message.timestamp[1]
        key = (message.topic, message.partition)
        read_at = self._wall_ms()
        with self._lock:
            previous = self._latest.get(key)
            if previous is not None and previous[0] > timestamp:
                timestamp = previous[0]
            self._latest[key] = (timestamp, read_at)

    def now_ms(self) -> int:
        wall = self._wall_ms()
        with self._lock:
            progress = list(self._latest.values())
        marks = []
        for timestamp, read_at in progress:
            if wall - read_at > self._idle_ms:
                continue  # drained: nothing more to wait for
            lag_at_read = read_at - timestamp
            if lag_at_read <= self._live_lag_ms:
                marks.append(wall - lag_at_read)  # live: time passes as on the wall
            else:
                marks.append(timestamp)  # catching up: only reading moves it
        return min([wall, *marks])
