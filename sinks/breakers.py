"""Bytewax sink feeding the gateway's circuit breakers through Redis.

Per closed opportunity the dataflow emits one ``SourceOutcome`` per waterfall
source the SDK reported on; this sink adds them up per (app, source, minute)
in one Redis hash per app (``<prefix>brk:<app_id>``, fields from
``mediation.rules.breaker.breaker_field``), which expires 15 minutes after
its last write. The same outcomes are also counted per config version
(``<prefix>cohort:<app_id>:<version>``, fields from
``mediation.rules.publish.cohort_field``): the load attempts and load
failures the publish worker's health gate compares between the cohorts of a
rollout.

Delivery guarantee: at-least-once, and deliberately lossy when Redis is
down. Breakers are a heuristic over minutes of traffic: a re-processed
batch counts twice and a batch written while Redis is away is dropped (with
a warning), rather than holding the dataflow.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from redis.exceptions import RedisError

from mediation.rules.breaker import breaker_field
from mediation.rules.publish import (
    COHORT_LOAD,
    COHORT_LOAD_FAILURE,
    COHORT_TTL_S,
    cohort_field,
    cohort_key,
)

__all__ = ["RedisBreakerSink", "SourceOutcome", "breaker_key"]

log = logging.getLogger(__name__)

_TTL_S = 15 * 60


@dataclass(frozen=True, slots=True)
class SourceOutcome:
    app_id: str
    source_id: str
    minute: int  # opportunity time // 60000
    failed: bool
    config_version: int  # the config version that chose the waterfall


def breaker_key(namespace: str, app_id: str) -> str:
    return f"{namespace}brk:{app_id}"


class _RedisBreakerPartition(StatelessSinkPartition[SourceOutcome]):
    def __init__(self, redis_url: str, namespace: str):
        self._client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._namespace = namespace

    def write_batch(self, items: list[SourceOutcome]) -> None:
        counts: Counter[tuple[str, str]] = Counter()  # (hash key, field)
        breaker_keys: set[str] = set()
        cohort_keys: set[str] = set()
        for item in items:
            brk = breaker_key(self._namespace, item.app_id)
            cohort = cohort_key(self._namespace, item.app_id, item.config_version)
            breaker_keys.add(brk)
            cohort_keys.add(cohort)
            counts[(brk, breaker_field(item.source_id, item.minute, "a"))] += 1
            counts[(cohort, cohort_field(item.minute, COHORT_LOAD))] += 1
            if item.failed:
                counts[(brk, breaker_field(item.source_id, item.minute, "f"))] += 1
                counts[(cohort, cohort_field(item.minute, COHORT_LOAD_FAILURE))] += 1
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for (key, field_name), count in counts.items():
                    pipe.hincrby(key, field_name, count)
                for key in breaker_keys:
                    pipe.expire(key, _TTL_S)
                for key in cohort_keys:
                    pipe.expire(key, COHORT_TTL_S)
                pipe.execute()
        except RedisError as exc:
            log.warning("dropped %d breaker outcome(s), Redis unavailable: %s", len(items), exc)

    def close(self) -> None:
        self._client.close()


class RedisBreakerSink(DynamicSink[SourceOutcome]):
    def __init__(self, redis_url: str, namespace: str):
        self._redis_url = redis_url
        self._namespace = namespace

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisBreakerPartition:
        return _RedisBreakerPartition(self._redis_url, self._namespace)
