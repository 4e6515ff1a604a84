"""Per-config-version request signals for the publish worker's health gate.

While a config rolls out, devices in the new version's rollout buckets and
the rest are served different versions; the publish worker compares the
two cohorts (``mediation.rules.publish.health_regression``). This counts,
per (app, version, minute), the sync requests answered from each version,
the ones that ended in an error and the no-fills.

Counting is in memory; a background task adds the counts to Redis once a
second (one pipelined round trip for the whole process), so the request
path never waits on Redis. The counts are a heuristic over minutes: when
Redis is away, a second's counts are dropped with a warning.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from mediation.clock import now_ms
from mediation.rules.publish import (
    COHORT_ERROR,
    COHORT_NO_FILL,
    COHORT_REQUEST,
    COHORT_TTL_S,
    cohort_field,
    cohort_key,
)

from .periodic import PeriodicTask

__all__ = ["CohortCounters"]

log = logging.getLogger(__name__)


class CohortCounters:
    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str,
        flush_s: float = 1.0,
        clock_ms: Callable[[], int] = now_ms,
    ):
        self._redis = client
        self._namespace = namespace
        self._clock_ms = clock_ms
        self._pending: collections.Counter[tuple[str, int, str]] = collections.Counter()
        self._flusher = PeriodicTask("cohort-flush", flush_s, self.flush)

    def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()
        await self.flush()

    def request(
        self, app_id: str, version: int, *, error: bool = False, no_fill: bool = False
    ) -> None:
        """One sync request answered from ``version`` (an error, a no-fill, or a fill)."""
        field_minute = self._clock_ms() // 60_000
        pending = self._pending
        pending[(app_id, version, cohort_field(field_minute, COHORT_REQUEST))] += 1
        if error:
            pending[(app_id, version, cohort_field(field_minute, COHORT_ERROR))] += 1
        if no_fill:
            pending[(app_id, version, cohort_field(field_minute, COHORT_NO_FILL))] += 1

    async def flush(self) -> None:
        if not self._pending:
            return
        counts, self._pending = self._pending, collections.Counter()
        keys = {cohort_key(self._namespace, app, version) for app, version, _ in counts}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for (app_id, version, field_name), count in counts.items():
                    pipe.hincrby(cohort_key(self._namespace, app_id, version), field_name, count)
                for key in keys:
                    pipe.expire(key, COHORT_TTL_S)
                await pipe.execute()
        except RedisError as exc:
            log.warning("dropped %d cohort count(s), Redis unavailable: %s", counts.total(), exc)
