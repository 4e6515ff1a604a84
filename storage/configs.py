"""Config snapshots and publish operations in Postgres.

Snapshots are immutable: a body is validated, checksummed and stored as
the app's next version (pushing the latest body again creates nothing).
Publish operations move through ``mediation.rules.publish``'s state
machine; every move is a compare-and-set on the operation's (state, stage)
written together with its ``publish_transitions`` row and an
``audit_records`` row, in one transaction. Times are the database's
(``now()``), so workers on several hosts agree on dwell times.

Every function takes an autocommit connection (``connect(url,
autocommit=True)``): each write opens its own transaction, and nothing is
left uncommitted by a read before it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from mediation.errors import RefusedError
from mediation.rules.publish import (
    ACTIVE_STATES,
    PENDING,
    PUBLISHED,
    ROLLBACK_FROM,
    ROLLING_BACK,
    TRANSITIONS,
    HealthThresholds,
    Operation,
    Stage,
    Step,
    format_plan,
    parse_plan,
)
from mediation.rules.waterfall import ConfigError, parse_config, validate_config

from .audit import record_audit

__all__ = [
    "ConfigSnapshot",
    "DegradationSwitch",
    "PublishError",
    "PublishOperation",
    "Transition",
    "apply_step",
    "config_checksum",
    "get_operation",
    "get_snapshot",
    "list_operations",
    "list_snapshots",
    "list_transitions",
    "operations_to_advance",
    "push_config",
    "request_rollback",
    "start_publish",
    "switch_degradation",
]


class PublishError(RefusedError):
    """A config or publish request that cannot be carried out; ``code`` says why."""

    code = "publish_refused"


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    app_id: str
    version: int
    checksum: str
    body: Mapping[str, Any]
    created_by: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class PublishOperation:
    id: int
    app_id: str
    version: int
    previous_version: int | None
    state: str
    stage: int
    rollout_percent: int
    plan: tuple[Stage, ...]
    thresholds: HealthThresholds
    reason: str | None
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    stage_started_ms: int  # updated_at, in the database's epoch milliseconds
    db_now_ms: int  # the database's clock when this was read

    def machine_view(self) -> Operation:
        return Operation(self.state, self.stage, self.plan, self.stage_started_ms)


@dataclass(frozen=True, slots=True)
class Transition:
    from_state: str | None
    to_state: str
    stage: int | None
    rollout_percent: int | None
    reason: str
    actor: str | None
    at: dt.datetime


def _require_autocommit(conn: psycopg.Connection) -> None:
    # Without autocommit, a read before ``conn.transaction()`` leaves an
    # implicit transaction open and the block becomes a savepoint that is
    # never committed.
    if not conn.autocommit:
        raise ValueError("storage.configs needs an autocommit connection")


def config_checksum(body: Mapping[str, Any]) -> str:
    """SHA-256 of the body's canonical JSON (sorted keys)."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def push_config(
    conn: psycopg.Connection, app_id: str, body: Mapping[str, Any], actor: str
) -> tuple[ConfigSnapshot, bool]:
    """Store ``body`` as the app's next version: (snapshot, created).

    Raises ``ConfigError`` (every problem listed) for an invalid body and
    ``PublishError("unknown_app")`` for an app that does not exist. The same
    body as the latest version creates nothing and returns that version.
    """
    _require_autocommit(conn)
    errors = validate_config(body)
    if errors:
        raise ConfigError(errors)
    checksum = config_checksum(body)
    with conn.transaction():
        # One pusher per app at a time: versions are max + 1.
        if (
            conn.execute("SELECT 1 FROM apps WHERE app_id = %s FOR UPDATE", (app_id,)).fetchone()
            is None
        ):
            raise PublishError("unknown_app", f"no app {app_id!r}")
        latest = list_snapshots(conn, app_id, limit=1)
        if latest and latest[0].checksum == checksum:
            return latest[0], False
        version = latest[0].version + 1 if latest else 1
        conn.execute(
            "INSERT INTO config_snapshots (app_id, version, body, checksum, created_by) "
            "VALUES (%s, %s, %s, %s, %s)",
            (app_id, version, Jsonb(dict(body)), checksum, actor),
        )
        record_audit(
            conn,
            actor,
            "config.create",
            f"app:{app_id}",
            None,
            {"version": version, "checksum": checksum},
        )
    snapshot = get_snapshot(conn, app_id, version)
    assert snapshot is not None  # written above
    return snapshot, True


_SNAPSHOT_COLUMNS = "app_id, version, checksum, body, created_by, created_at"


def get_snapshot(conn: psycopg.Connection, app_id: str, version: int) -> ConfigSnapshot | None:
    row = conn.execute(
        f"SELECT {_SNAPSHOT_COLUMNS} FROM config_snapshots WHERE app_id = %s AND version = %s",
        (app_id, version),
    ).fetchone()
    return ConfigSnapshot(*row) if row else None


def list_snapshots(conn: psycopg.Connection, app_id: str, limit: int = 50) -> list[ConfigSnapshot]:
    """The app's versions, newest first."""
    rows = conn.execute(
        f"SELECT {_SNAPSHOT_COLUMNS} FROM config_snapshots WHERE app_id = %s "
        "ORDER BY version DESC LIMIT %s",
        (app_id, limit),
    ).fetchall()
    return [ConfigSnapshot(*row) for row in rows]


_OPERATION_SELECT = """
SELECT id, app_id, version, previous_version, state, stage, rollout_percent, plan,
       thresholds, reason, created_by, created_at, updated_at,
       (extract(epoch FROM updated_at) * 1000)::bigint,
       (extract(epoch FROM now()) * 1000)::bigint
FROM publish_operations
"""


# Operations published directly (``mediation seed``) store no plan: one stage.
_DIRECT = (Stage(100, 0),)


def _operation(row: Sequence[Any]) -> PublishOperation:
    (op_id, app_id, version, previous, state, stage, percent, plan, thresholds, reason,
     created_by, created_at, updated_at, started_ms, now_ms) = row  # fmt: skip
    return PublishOperation(
        op_id,
        app_id,
        version,
        previous,
        state,
        stage,
        percent,
        parse_plan(plan) if plan else _DIRECT,
        HealthThresholds.from_dict(thresholds),
        reason,
        created_by,
        created_at,
        updated_at,
        started_ms,
        now_ms,
    )


def get_operation(conn: psycopg.Connection, operation_id: int) -> PublishOperation | None:
    row = conn.execute(_OPERATION_SELECT + "WHERE id = %s", (operation_id,)).fetchone()
    return _operation(row) if row else None


def list_operations(
    conn: psycopg.Connection, app_id: str, limit: int = 20
) -> list[PublishOperation]:
    """The app's publish operations, newest first."""
    rows = conn.execute(
        _OPERATION_SELECT + "WHERE app_id = %s ORDER BY id DESC LIMIT %s", (app_id, limit)
    ).fetchall()
    return [_operation(row) for row in rows]


def operations_to_advance(conn: psycopg.Connection) -> list[PublishOperation]:
    """Every active operation, oldest first (what the publish worker looks at)."""
    rows = conn.execute(
        _OPERATION_SELECT + "WHERE state = ANY(%s) ORDER BY id", (list(ACTIVE_STATES),)
    ).fetchall()
    return [_operation(row) for row in rows]


def list_transitions(conn: psycopg.Connection, operation_id: int) -> list[Transition]:
    rows = conn.execute(
        "SELECT from_state, to_state, stage, rollout_percent, reason, actor, at "
        "FROM publish_transitions WHERE operation_id = %s ORDER BY id",
        (operation_id,),
    ).fetchall()
    return [Transition(*row) for row in rows]


def _record_transition(
    conn: psycopg.Connection,
    operation: PublishOperation,
    from_state: str | None,
    step: Step,
    actor: str,
) -> None:
    conn.execute(
        "INSERT INTO publish_transitions "
        "(operation_id, from_state, to_state, stage, rollout_percent, reason, actor) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (operation.id, from_state, step.state, step.stage, step.percent, step.reason, actor),
    )
    record_audit(
        conn,
        actor,
        f"config.publish.{step.state}",
        f"app:{operation.app_id}/operation:{operation.id}",
        {"state": from_state, "stage": operation.stage, "percent": operation.rollout_percent}
        if from_state is not None
        else None,
        {
            "state": step.state,
            "stage": step.stage,
            "percent": step.percent,
            "version": operation.version,
            "previous_version": operation.previous_version,
            "reason": step.reason,
        },
    )


def _fully_served_version(conn: psycopg.Connection, app_id: str) -> int | None:
    """The version every device gets now: the app's latest published operation's."""
    row = conn.execute(
        "SELECT version FROM publish_operations WHERE app_id = %s AND state = %s "
        "ORDER BY id DESC LIMIT 1",
        (app_id, PUBLISHED),
    ).fetchone()
    return int(row[0]) if row else None


def start_publish(
    conn: psycopg.Connection,
    app_id: str,
    version: int,
    plan: Sequence[Stage],
    actor: str,
    thresholds: HealthThresholds | None = None,
) -> PublishOperation:
    """Create a pending operation; the publish worker takes it from there."""
    _require_autocommit(conn)
    thresholds = thresholds or HealthThresholds()
    with conn.transaction():
        if get_snapshot(conn, app_id, version) is None:
            raise PublishError("unknown_version", f"app {app_id!r} has no config version {version}")
        previous = _fully_served_version(conn, app_id)
        if previous == version:
            raise PublishError("already_published", f"version {version} is already published")
        try:
            with conn.transaction():  # a savepoint: the violation is reported, not raised raw
                row = conn.execute(
                    "INSERT INTO publish_operations (app_id, version, previous_version, state, "
                    "plan, thresholds, created_by, reason) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (
                        app_id,
                        version,
                        previous,
                        PENDING,
                        Jsonb(format_plan(plan)),
                        Jsonb(_thresholds_dict(thresholds)),
                        actor,
                        "requested",
                    ),
                ).fetchone()
        except psycopg.errors.UniqueViolation:
            active = [op.id for op in list_operations(conn, app_id) if op.state in ACTIVE_STATES]
            raise PublishError(
                "operation_active",
                f"app {app_id!r} already has an active publish operation {active}; "
                "wait for it or roll it back",
            ) from None
        assert row is not None
        operation = get_operation(conn, int(row[0]))
        assert operation is not None
        _record_transition(
            conn,
            operation,
            None,
            Step(PENDING, 0, 0, f"publish of version {version} requested"),
            actor,
        )
    return operation


def _thresholds_dict(thresholds: HealthThresholds) -> dict[str, float | int]:
    return {
        "max_error_rate_increase": thresholds.max_error_rate_increase,
        "max_no_fill_rate_increase": thresholds.max_no_fill_rate_increase,
        "max_load_failure_rate_increase": thresholds.max_load_failure_rate_increase,
        "min_requests": thresholds.min_requests,
    }


def apply_step(
    conn: psycopg.Connection, operation: PublishOperation, step: Step, actor: str
) -> bool:
    """Move ``operation`` from the (state, stage) it was read in; False if it moved meanwhile."""
    _require_autocommit(conn)
    if step.state not in TRANSITIONS[operation.state]:
        raise PublishError(
            "invalid_transition", f"operation {operation.id}: {operation.state} -> {step.state}"
        )
    with conn.transaction():
        row = conn.execute(
            "UPDATE publish_operations SET state = %s, stage = %s, rollout_percent = %s, "
            "reason = %s, updated_at = clock_timestamp() "
            "WHERE id = %s AND state = %s AND stage = %s RETURNING id",
            (
                step.state,
                step.stage,
                step.percent,
                step.reason,
                operation.id,
                operation.state,
                operation.stage,
            ),
        ).fetchone()
        if row is None:
            return False  # another worker or an operator moved it first
        _record_transition(conn, operation, operation.state, step, actor)
    return True


def request_rollback(
    conn: psycopg.Connection, operation_id: int, actor: str, reason: str
) -> PublishOperation:
    """Operator rollback: the operation goes to rolling_back (the worker completes it).

    From then on every device gets the version published before it.
    """
    for _attempt in range(5):  # lost a race with the worker: read again
        operation = get_operation(conn, operation_id)
        if operation is None:
            raise PublishError("unknown_operation", f"no publish operation {operation_id}")
        if operation.state not in ROLLBACK_FROM:
            raise PublishError(
                "not_rollbackable",
                f"operation {operation_id} is {operation.state}; nothing to roll back",
            )
        if operation.state == PUBLISHED:
            newer = [
                op
                for op in list_operations(conn, operation.app_id, limit=1)
                if op.id != operation.id
            ]
            if newer:
                raise PublishError(
                    "not_latest",
                    f"operation {newer[0].id} is newer; roll back the latest operation instead",
                )
        step = Step(ROLLING_BACK, operation.stage, 0, f"rollback by {actor}: {reason}")
        try:
            if apply_step(conn, operation, step, actor):
                moved = get_operation(conn, operation_id)
                assert moved is not None
                return moved
        except psycopg.errors.UniqueViolation:
            raise PublishError(
                "operation_active",
                f"app {operation.app_id!r} has another active operation; roll that back first",
            ) from None
    raise PublishError("busy", f"operation {operation_id} keeps changing; try again")


@dataclass(frozen=True, slots=True)
class DegradationSwitch:
    app_id: str
    profile: str | None  # None: switched off
    reason: str
    switched_by: str
    switched_at: dt.datetime


def switch_degradation(
    conn: psycopg.Connection, app_id: str, profile: str | None, actor: str, reason: str
) -> DegradationSwitch:
    """Switch a degradation profile on (by name) or off (``None``) for an app.

    The profile must be defined in the version every device is served now.
    """
    _require_autocommit(conn)
    with conn.transaction():
        if conn.execute("SELECT 1 FROM apps WHERE app_id = %s", (app_id,)).fetchone() is None:
            raise PublishError("unknown_app", f"no app {app_id!r}")
        if profile is not None:
            served = _fully_served_version(conn, app_id)
            snapshot = get_snapshot(conn, app_id, served) if served is not None else None
            defined = (
                parse_config(snapshot.version, snapshot.body).degradation_profiles
                if snapshot is not None
                else {}
            )
            if profile not in defined:
                raise PublishError(
                    "unknown_profile",
                    f"profile {profile!r} is not in {app_id}'s published config v{served} "
                    f"(defined: {sorted(defined) or 'none'})",
                )
        before = conn.execute(
            "SELECT profile FROM degradation_switches WHERE app_id = %s FOR UPDATE", (app_id,)
        ).fetchone()
        row = conn.execute(
            "INSERT INTO degradation_switches (app_id, profile, reason, switched_by) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (app_id) DO UPDATE SET profile = "
            "excluded.profile, reason = excluded.reason, switched_by = excluded.switched_by, "
            "switched_at = now() RETURNING app_id, profile, reason, switched_by, switched_at",
            (app_id, profile, reason, actor),
        ).fetchone()
        record_audit(
            conn,
            actor,
            "config.degradation." + ("on" if profile is not None else "off"),
            f"app:{app_id}",
            {"profile": before[0] if before else None},
            {"profile": profile, "reason": reason},
        )
    assert row is not None
    return DegradationSwitch(*row)
