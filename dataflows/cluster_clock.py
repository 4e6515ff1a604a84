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

The cluster clock also relays the acknowledgements of batch markers
(``dataflows/inflight.py``): a marker applied by another process than the
one that read its batch is pushed, every 200 ms, to that process's
``<prefix>worker-acks:<sender>`` (a set of receipts, expiring after a
minute unread), which the reading process applies and then removes. While
Redis is away the acknowledgements wait, and so does closing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from redis.exceptions import RedisError

from .inflight import DeliveryLedger

__all__ = ["ClusterWatermark"]

log = logging.getLogger(__name__)

_TTL_MS = 5_000
_ACKS_TTL_MS = 60_000


class ClusterWatermark:
    def __init__(
        self,
        local_ms: Callable[[], int],
        redis_url: str,
        namespace: str,
        process_index: int,
        process_count: int,
        interval_s: float = 0.2,
        ledger: DeliveryLedger | None = None,
    ):
        self._local_ms = local_ms
        self._ledger = ledger
        self._namespace = namespace
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
        """Publish this process's watermark, relay marker acknowledgements,
        and take the cluster's minimum if every process is known."""
        self._redis.set(self._own_key, self._local_ms(), px=_TTL_MS)
        if self._ledger is not None:
            self._relay_acknowledgements(self._ledger)
        known = [int(value) for value in self._redis.mget(self._keys) if value is not None]
        if len(known) == len(self._keys):
            self._cluster_ms = min(known)

    def _relay_acknowledgements(self, ledger: DeliveryLedger) -> None:
        outgoing = ledger.take_remote()
        try:
            if outgoing:
                pipe = self._redis.pipeline(transaction=False)
                for sender, receipts in outgoing.items():
                    key = self._acks_key(sender)
                    pipe.sadd(key, *receipts)
                    pipe.pexpire(key, _ACKS_TTL_MS)
                pipe.execute()
        except (RedisError, ValueError):
            for sender, receipts in outgoing.items():  # sent again next round
                ledger.owe(sender, receipts)
            raise
        # Read, apply, then remove what was read: a lost reply leaves receipts
        # to be read again (applying one twice changes nothing), never lost.
        own = self._acks_key(ledger.sender)
        received = [
            member.decode() if isinstance(member, bytes) else member
            for member in self._redis.smembers(own)
        ]
        if received:
            ledger.acknowledge(received)
            self._redis.srem(own, *received)

    def _acks_key(self, sender: str) -> str:
        return f"{self._namespace}worker-acks:{sender}"

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
