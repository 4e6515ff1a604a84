"""The gateway's view of the circuit breakers (``mediation.rules.breaker``).

Every second each process reads the per-app outcome counters the worker
keeps in Redis and decides which sources are open; the request path then
only looks up a dict. If Redis is unreachable the last decision stands.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis.exceptions import RedisError

from mediation.clock import now_ms
from mediation.rules.breaker import (
    BreakerPolicy,
    admitted_waterfall,
    health_by_source,
    is_open,
)
from mediation.rules.model import WaterfallEntry
from sinks.breakers import breaker_key

from .catalog import Catalog
from .periodic import PeriodicTask

__all__ = ["BreakerBoard"]

log = logging.getLogger(__name__)

_DEFAULT_POLICY = BreakerPolicy()


class BreakerBoard:
    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str,
        catalog: Catalog,
        gauge: Gauge,
        policy: BreakerPolicy = _DEFAULT_POLICY,
        refresh_s: float = 1.0,
        clock_ms: Callable[[], int] = now_ms,
    ):
        self._redis = client
        self._namespace = namespace
        self._catalog = catalog
        self._gauge = gauge
        self._policy = policy
        self._clock_ms = clock_ms
        self._open: dict[str, frozenset[str]] = {}
        self._gauge_labels: set[tuple[str, str]] = set()
        self._refresher = PeriodicTask("breaker-refresh", refresh_s, self.refresh)

    async def start(self) -> None:
        await self.refresh()
        self._refresher.start()

    async def stop(self) -> None:
        await self._refresher.stop()

    async def refresh(self) -> None:
        apps = self._catalog.app_ids()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for app_id in apps:
                    pipe.hgetall(breaker_key(self._namespace, app_id))
                results = await pipe.execute()
        except RedisError as exc:
            log.debug("breaker refresh failed, keeping the last decision: %s", exc)
            return
        now_minute = self._clock_ms() // 60_000
        decided: dict[str, frozenset[str]] = {}
        labels: set[tuple[str, str]] = set()
        for app_id, raw in zip(apps, results, strict=True):
            counts = {k.decode(): int(v) for k, v in raw.items()}
            health = health_by_source(counts, now_minute, self._policy)
            opened = frozenset(s for s, h in health.items() if is_open(h, self._policy))
            for source in health:
                self._gauge.labels(app_id, source).set(1 if source in opened else 0)
                labels.add((app_id, source))
            if opened:
                decided[app_id] = opened
        for app_id, source in self._gauge_labels - labels:  # no recent outcomes: closed
            self._gauge.labels(app_id, source).set(0)
        self._gauge_labels = labels
        self._open = decided

    def open_sources(self, app_id: str) -> frozenset[str]:
        return self._open.get(app_id, frozenset())

    def admit(
        self, app_id: str, waterfall: tuple[WaterfallEntry, ...]
    ) -> tuple[WaterfallEntry, ...]:
        opened = self._open.get(app_id)
        if not opened:
            return waterfall
        return admitted_waterfall(waterfall, opened, random.random(), self._policy)
