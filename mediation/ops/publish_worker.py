"""config-publish-worker: drives publish operations through their state machine.

Every ``interval_s`` it reads the active operations and asks
``mediation.rules.publish.next_step`` what to do with each, giving it the
validation verdict (in ``validating``) and the health gate's verdict (once a
stage's dwell has passed). The answer is applied as a compare-and-set
(``storage.configs.apply_step``): any number of workers may run, and a
worker killed at any point leaves a state another one (or its restart)
continues from. Gateways pick a change up within their catalog refresh
(2 s).

``MEDIATION_PUBLISH_CRASH_AFTER=STATE`` (drills only) makes the worker
SIGKILL itself right after it committed a transition into ``STATE``
(``rolling_out:N`` for stage N): the kill tests prove that a restarted
worker finishes every operation with each transition applied once.

The health gate compares the new version's cohort with the previous
version's over the current stage (``CohortSource``); the cohort counts come
from Redis (gateway: requests, errors, no-fills; dataflow: load attempts and
failures). When Redis cannot be read, the gate holds the stage rather than
advance blind.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import psycopg
import redis
from redis.exceptions import RedisError

from mediation.errors import ServiceError
from mediation.rules.publish import (
    ROLLING_OUT,
    VALIDATING,
    CohortHealth,
    Step,
    cohort_health,
    cohort_key,
    health_regression,
    next_step,
)
from mediation.rules.waterfall import validate_config
from storage.configs import (
    PublishOperation,
    apply_step,
    get_snapshot,
    operations_to_advance,
)
from storage.db import DatabaseUnavailableError, connect

__all__ = [
    "AppliedStep",
    "CohortSource",
    "RedisCohorts",
    "advance_once",
    "crash_drill",
    "serve",
]

log = logging.getLogger(__name__)

ACTOR = "publish-worker"


class CohortSource(Protocol):
    def cohort(self, app_id: str, version: int, since_ms: int, until_ms: int) -> CohortHealth:
        """The signals of devices served ``version`` between the two times.

        Raises ``CohortsUnavailableError`` when they cannot be read.
        """
        ...


class CohortsUnavailableError(ServiceError):
    code = "cohorts_unavailable"


class RedisCohorts:
    """Cohort counts as the gateway and the dataflow write them (one hash per version)."""

    def __init__(self, redis_url: str, namespace: str):
        self._client = redis.Redis.from_url(
            redis_url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
        )
        self._namespace = namespace

    def cohort(self, app_id: str, version: int, since_ms: int, until_ms: int) -> CohortHealth:
        try:
            raw = self._client.hgetall(cohort_key(self._namespace, app_id, version))
        except RedisError as exc:
            raise CohortsUnavailableError(str(exc)) from exc
        fields = {str(k): int(v) for k, v in raw.items()}
        return cohort_health(fields, since_ms, until_ms)

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True, slots=True)
class AppliedStep:
    operation_id: int
    app_id: str
    version: int
    from_state: str
    step: Step


def _config_errors(conn: psycopg.Connection, operation: PublishOperation) -> list[str]:
    snapshot = get_snapshot(conn, operation.app_id, operation.version)
    if snapshot is None:  # the foreign key makes this impossible; say so if it happens
        return [f"config version {operation.version} is missing"]
    return validate_config(snapshot.body)


def _regression(cohorts: CohortSource, operation: PublishOperation) -> str | None:
    """The health gate over the current stage; raises when the signals cannot be read."""
    if operation.previous_version is None:
        return None  # a first version: nothing to compare with
    since, until = operation.stage_started_ms, operation.db_now_ms
    new = cohorts.cohort(operation.app_id, operation.version, since, until)
    previous = cohorts.cohort(operation.app_id, operation.previous_version, since, until)
    return health_regression(new, previous, operation.thresholds)


def _advance(
    conn: psycopg.Connection, cohorts: CohortSource, operation: PublishOperation
) -> AppliedStep | None:
    view, now = operation.machine_view(), operation.db_now_ms
    if operation.state == VALIDATING:
        step = next_step(view, now, config_errors=_config_errors(conn, operation))
    elif operation.state == ROLLING_OUT:
        if next_step(view, now) is None:
            return None  # the stage's dwell has not passed: no need to ask the gate
        try:
            regression = _regression(cohorts, operation)
        except CohortsUnavailableError as exc:
            log.warning("operation %d holds: health signals unavailable: %s", operation.id, exc)
            return None
        step = next_step(view, now, regression=regression)
    else:
        step = next_step(view, now)
    if step is None or not apply_step(conn, operation, step, ACTOR):
        return None  # nothing to do, or another worker moved it first
    return AppliedStep(operation.id, operation.app_id, operation.version, operation.state, step)


def advance_once(conn: psycopg.Connection, cohorts: CohortSource) -> list[AppliedStep]:
    """One pass over the active operations; what was applied, in order."""
    applied = []
    for operation in operations_to_advance(conn):
        result = _advance(conn, cohorts, operation)
        if result is not None:
            log.info(
                "operation %d (%s v%d): %s -> %s at %d%%: %s",
                result.operation_id,
                result.app_id,
                result.version,
                result.from_state,
                result.step.state,
                result.step.percent,
                result.step.reason,
            )
            applied.append(result)
    return applied


def crash_drill(setting: str | None) -> Callable[[AppliedStep], None] | None:
    """An ``on_step`` that SIGKILLs this process after entering ``setting``'s state."""
    if not setting:
        return None
    state, _, stage = setting.partition(":")

    def maybe_die(result: AppliedStep) -> None:
        if result.step.state == state and (not stage or str(result.step.stage) == stage):
            os.kill(os.getpid(), signal.SIGKILL)

    return maybe_die


def serve(
    database_url: str,
    cohorts: CohortSource,
    interval_s: float = 1.0,
    stop: threading.Event | None = None,
    on_step: Callable[[AppliedStep], None] | None = None,
) -> None:
    """Advance operations every ``interval_s`` until ``stop`` is set.

    Postgres being away is waited out (logged), never fatal.
    """
    stop = stop or threading.Event()
    conn: psycopg.Connection | None = None
    while not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = connect(database_url, autocommit=True)
            # Several steps in a row when nothing makes an operation wait
            # (e.g. pending -> validating -> rolling_out).
            while not stop.is_set():
                applied = advance_once(conn, cohorts)
                for result in applied:
                    if on_step is not None:
                        on_step(result)
                if not applied:
                    break
        except (psycopg.OperationalError, DatabaseUnavailableError) as exc:
            log.warning("publish worker: Postgres unavailable, retrying: %s", exc)
            if conn is not None:
                conn.close()
            conn = None
        stop.wait(interval_s)
    if conn is not None:
        conn.close()
