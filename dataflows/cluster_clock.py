"""Event time for a cluster of worker processes: the slowest process's input watermark.

Each process reads only its share of the input partitions, but a key's
records may be read by any process and are exchanged to the one that owns
the key. Closing on one process's own watermark could close a key while
another process, further behind in its backlog, has not yet read the key's
events. So with several processes every one publishes its input watermark
to Redis (``<prefix>worker-watermark:<index>``, expiring after 5 s) every
200 ms, and each closes on the minimum over the whole cluster.

While any process's value is missing (not started yet, or gone) or Redis
cannot be reached, the cluster clock holds at its last value: closing waits,
nothing closes early. One process alone does not use this (its own
watermark already covers every partition).

Each process also publishes its in-flight counters (records decoded and
handed to the closing step, records applied there: ``dataflows/inflight.py``).
A record read by one process may be applied by another, so only the sums
over the cluster say whether what was read has arrived; ``flight`` gives
them (this process's own counts fresh, the others' as last published,
at most 200 ms old), or ``None`` while any process is unknown (wait).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from redis.exceptions import RedisError

from .inflight import InFlight

__all__ = ["ClusterWatermark"]

log = logging.getLogger(__name__)

_TTL_MS = 5_000


class ClusterWatermark:
    def __init__(
        self,
        local_ms: Callable[[], int],
        redis_url: str,
        namespace: str,
        process_index: int,
        process_count: int,
        interval_s: float = 0.2,
        in_flight: InFlight | None = None,
    ):
        self._local_ms = local_ms
        self._local_in_flight = in_flight or InFlight()
        # The other processes' (sent, applied) sums; None until all have spoken.
        self._others: tuple[int, int] | None = None
        self._process_index = process_index
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=1.0)
        self._keys = [f"{namespace}worker-watermark:{i}" for i in range(process_count)]
        self._own_key = self._keys[process_index]
        self._interval_s = interval_s
        self._cluster_ms = 0  # nothing closes before every process has spoken
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-watermark", daemon=True)

    def start(self) -> ClusterWatermark:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def now_ms(self) -> int:
        return min(self._cluster_ms, self._local_ms())

    def flight(self) -> tuple[int, int] | None:
        """(sent, applied) over the cluster, or None while a process is unknown."""
        others = self._others
        if others is None:
            return None
        sent, applied = self._local_in_flight.counts()
        return sent + others[0], applied + others[1]

    def sync_once(self) -> None:
        """Publish this process's watermark and counters; take the cluster's if all are known."""
        sent, applied = self._local_in_flight.counts()
        self._redis.set(self._own_key, f"{self._local_ms()}:{sent}:{applied}", px=_TTL_MS)
        known = [_fields(value) for value in self._redis.mget(self._keys) if value is not None]
        if len(known) < len(self._keys):
            return
        self._cluster_ms = min(published[0] for published in known)
        others = [p for index, p in enumerate(known) if index != self._process_index]
        if all(len(published) == 3 for published in others):
            self._others = (sum(p[1] for p in others), sum(p[2] for p in others))
        else:  # a process of an earlier version publishes no counters: keep waiting
            self._others = None

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self.sync_once()
                failing = False
            except (RedisError, ValueError) as exc:
                if not failing:
                    log.warning("cluster watermark not shared (closing holds): %s", exc)
                failing = True
            self._stop.wait(self._interval_s)


def _fields(value: bytes | str) -> list[int]:
    """``watermark:sent:applied`` (or a bare watermark, from an earlier version)."""
    text = value.decode() if isinstance(value, bytes) else value
    return [int(part) for part in text.split(":")]
