"""The broker's high watermark of every input partition, polled in the background.

Bytewax keeps its Kafka offsets in the recovery store, not in a consumer
group, so the broker cannot say how far behind the worker is. This poller
asks the broker for each input partition's high watermark (the offset the
next produced message will get) once a second; compared with the next
offset the dataflow will read (``InputWatermark.positions``) it gives:

- the real lag per partition, in messages (``/metrics``);
- whether a partition has been read to the end of its log, which lets the
  input watermark follow the wall clock there (``dataflows/watermark.py``).

A failed poll keeps the last known values, and the time of the last poll
that succeeded tells the watermark how old they are; the poller never stops
the dataflow.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from mediation.clock import now_ms

from .watermark import PartitionKey

__all__ = ["HighWatermarkPoller"]

log = logging.getLogger(__name__)


class HighWatermarkPoller:
    def __init__(self, brokers: list[str], topics: list[str], interval_s: float = 1.0):
        self._topics = topics
        self._interval_s = interval_s
        self._consumer = Consumer(
            {
                "bootstrap.servers": ",".join(brokers),
                "group.id": "mediation-worker-lag",  # never joins: no subscribe, no commits
                "enable.auto.commit": False,
            }
        )
        self._highs: dict[PartitionKey, int] = {}
        self._lows: dict[PartitionKey, int] = {}
        self._polled_at_ms: int | None = None
        self._thread = threading.Thread(target=self._run, name="high-watermarks", daemon=True)

    def start(self) -> HighWatermarkPoller:
        self._thread.start()
        return self

    def highs(self) -> dict[PartitionKey, int]:
        return self._highs  # replaced whole, never mutated: safe to read from any thread

    def lows(self) -> dict[PartitionKey, int]:
        """The first offset still in each partition's log (retention moves it)."""
        return self._lows

    def polled_at_ms(self) -> int | None:
        """When the last successful poll started: its values are at least that recent."""
        return self._polled_at_ms

    def poll_once(self) -> None:
        started = now_ms()
        metadata = self._consumer.list_topics(timeout=5)
        highs: dict[PartitionKey, int] = {}
        lows: dict[PartitionKey, int] = {}
        for topic in self._topics:
            described = metadata.topics.get(topic)
            if described is None or described.error is not None:
                continue
            for partition in described.partitions:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=5, cached=False
                )
                highs[(topic, partition)] = int(high)
                lows[(topic, partition)] = int(low)
        self._lows = lows
        self._highs = highs
        self._polled_at_ms = started

    def _run(self) -> None:
        while True:  # a daemon thread: it ends with the process
            try:
                self.poll_once()
            except KafkaException as exc:
                log.warning("high watermark poll failed (keeping the last values): %s", exc)
            time.sleep(self._interval_s)
