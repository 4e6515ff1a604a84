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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from redis.exceptions import RedisError

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
    ):
        self._local_ms = local_ms
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

    def sync_once(self) -> None:
        """Publish this process's watermark; take the cluster's minimum if all are known."""
        self._redis.set(self._own_key, self._local_ms(), px=_TTL_MS)
        known = [int(value) for value in self._redis.mget(self._keys) if value is not None]
        if len(known) == len(self._keys):
            self._cluster_ms = min(known)

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
