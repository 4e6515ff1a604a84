"""Per-app rate limits shared by every gateway process through Redis.

A Redis round trip per request would cost more than the request itself, so
each process counts locally and, every ``flush_interval_s`` (50 ms), adds
its counts to one Redis counter per (app, kind, second) with ``INCRBY`` and
learns the fleet-wide total from the reply. A request is refused (429 +
``Retry-After``) when the last known total plus this process's unflushed
count reaches the limit. The limit therefore holds across processes to
within one flush interval of traffic.

When Redis is unreachable each process keeps enforcing the limit on its own
counts (so N processes admit up to N times the limit) and
``mediation_ratelimit_degraded`` counts the flushes that failed.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

from .periodic import PeriodicTask

__all__ = ["RateLimiter"]

log = logging.getLogger(__name__)

_Key = tuple[str, str, int]  # (app_id, kind, epoch second)


class RateLimiter:
    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str,
        degraded: Counter,
        flush_interval_s: float = 0.05,
        clock_s: Callable[[], float] = time.time,
    ):
        self._redis = client
        self._namespace = namespace
        self._degraded = degraded
        self._clock_s = clock_s
        self._pending: dict[_Key, int] = defaultdict(int)
        self._known_total: dict[_Key, int] = {}
        self._flusher = PeriodicTask("ratelimit-flush", flush_interval_s, self.flush)

    def allow(self, app_id: str, kind: str, limit_per_s: int) -> bool:
        key = (app_id, kind, int(self._clock_s()))
        if self._known_total.get(key, 0) + self._pending[key] >= limit_per_s:
            return False
        self._pending[key] += 1
        return True

    async def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()

    async def flush(self) -> None:
        now = int(self._clock_s())
        # Forget finished windows; unflushed counts of the last second still go out.
        for key in [k for k in self._known_total if k[2] < now - 1]:
            del self._known_total[key]
        pending = {k: n for k, n in self._pending.items() if n}
        self._pending = defaultdict(int)
        if not pending:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for (app_id, kind, second), count in pending.items():
                    name = f"{self._namespace}rl:{app_id}:{kind}:{second}"
                    pipe.incrby(name, count)
                    pipe.expire(name, 5)
                results = await pipe.execute()
        except RedisError as exc:
            self._degraded.inc()
            log.debug("rate-limit flush failed, enforcing locally: %s", exc)
            # Keep them pending: still counted locally, and sent once Redis is back.
            for key, count in pending.items():
                if key[2] >= now - 1:
                    self._pending[key] += count
            return
        for key, total in zip(pending, results[::2], strict=True):
            self._known_total[key] = int(total)
