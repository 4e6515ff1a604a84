"""Config snapshots and publish operations against the real Postgres.

The publish worker is driven pass by pass (``advance_once``) with cohort
signals given by the test; ``tests/integration/test_publish_playbook.py``
runs the real processes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from mediation.ops.publish_worker import advance_once
from mediation.rules.publish import (
    FAILED,
    PENDING,
    PUBLISHED,
    ROLLED_BACK,
    ROLLING_BACK,
    ROLLING_OUT,
    VALIDATING,
    CohortHealth,
    HealthThresholds,
    Stage,
    Step,
)
from mediation.rules.waterfall import ConfigError
from mediation.settings import Settings
from mediation.sim.seed import demo_config, seed_app
from storage.configs import (
    PublishError,
    apply_step,
    get_operation,
    list_snapshots,
    list_transitions,
    push_config,
    request_rollback,
    start_publish,
)
from storage.db import connect

pytestmark = pytest.mark.integration

INSTANT = (Stage(10, 0), Stage(100, 0))


class Cohorts:
    """Cohort signals set by the test: version -> health."""

    def __init__(self) -> None:
        self.by_version: dict[int, CohortHealth] = {}

    def cohort(self, app_id: str, version: int, since_ms: int, until_ms: int) -> CohortHealth:
        return self.by_version.get(version, CohortHealth())


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection]:
    seed_app(settings.database_url, "pub", demo_config())  # v1, published
    with connect(settings.database_url, autocommit=True) as connection:
        yield connection


def _v2(conn: psycopg.Connection) -> int:
    snapshot, created = push_config(conn, "pub", demo_config(grace_ms=12_345), "test")
    assert created
    return snapshot.version


def _run_until_settled(conn: psycopg.Connection, cohorts: Cohorts, operation_id: int) -> str:
    for _ in range(20):
        advance_once(conn, cohorts)
        operation = get_operation(conn, operation_id)
        assert operation is not None
        if operation.state in (PUBLISHED, FAILED, ROLLED_BACK):
            return operation.state
    raise AssertionError("operation did not settle")


def test_push_stores_the_next_version_once(conn: psycopg.Connection) -> None:
    version = _v2(conn)
    assert version == 2
    again, created = push_config(conn, "pub", demo_config(grace_ms=12_345), "test")
    assert (again.version, created) == (2, False)
    assert [s.version for s in list_snapshots(conn, "pub")] == [2, 1]
    actions = conn.execute(
        "SELECT action, after->>'version' FROM audit_records WHERE action = 'config.create'"
    ).fetchall()
    assert actions == [("config.create", "2")]


def test_an_invalid_config_is_refused_with_every_problem(conn: psycopg.Connection) -> None:
    body = demo_config()
    body["grace_ms"] = -5
    body["placements"]["banner_home"]["waterfall"] = []
    with pytest.raises(ConfigError) as caught:
        push_config(conn, "pub", body, "test")
    assert len(caught.value.errors) == 2
    assert list_snapshots(conn, "pub")[0].version == 1  # nothing stored


def test_unknown_app_and_version_are_refused(conn: psycopg.Connection) -> None:
    with pytest.raises(PublishError) as caught:
        push_config(conn, "nope", demo_config(), "test")
    assert caught.value.code == "unknown_app"
    with pytest.raises(PublishError) as caught:
        start_publish(conn, "pub", 9, INSTANT, "test")
    assert caught.value.code == "unknown_version"
    with pytest.raises(PublishError) as caught:
        start_publish(conn, "pub", 1, INSTANT, "test")
    assert caught.value.code == "already_published"


def test_a_healthy_rollout_goes_through_every_state_with_an_audit_trail(
    conn: psycopg.Connection,
) -> None:
    operation = start_publish(conn, "pub", _v2(conn), INSTANT, "test")
    assert (operation.state, operation.previous_version) == (PENDING, 1)
    assert _run_until_settled(conn, Cohorts(), operation.id) == PUBLISHED
    steps = [
        (t.from_state, t.to_state, t.rollout_percent) for t in list_transitions(conn, operation.id)
    ]
    assert steps == [
        (None, PENDING, 0),
        (PENDING, VALIDATING, 0),
        (VALIDATING, ROLLING_OUT, 10),
        (ROLLING_OUT, ROLLING_OUT, 100),
        (ROLLING_OUT, PUBLISHED, 100),
    ]
    audited = conn.execute(
        "SELECT count(*) FROM audit_records WHERE subject = %s",
        (f"app:pub/operation:{operation.id}",),
    ).fetchone()
    assert audited == (5,)


def test_one_active_operation_per_app(conn: psycopg.Connection) -> None:
    version = _v2(conn)
    start_publish(conn, "pub", version, INSTANT, "test")
    push_config(conn, "pub", demo_config(grace_ms=999), "test")
    with pytest.raises(PublishError) as caught:
        start_publish(conn, "pub", 3, INSTANT, "test")
    assert caught.value.code == "operation_active"


def test_a_regressing_cohort_is_rolled_back_automatically(conn: psycopg.Connection) -> None:
    cohorts = Cohorts()
    cohorts.by_version = {
        1: CohortHealth(requests=1_000, errors=5),
        2: CohortHealth(requests=100, errors=30),
    }
    operation = start_publish(
        conn, "pub", _v2(conn), INSTANT, "test", HealthThresholds(min_requests=50)
    )
    assert _run_until_settled(conn, cohorts, operation.id) == ROLLED_BACK
    transitions = list_transitions(conn, operation.id)
    assert [t.to_state for t in transitions][-2:] == [ROLLING_BACK, ROLLED_BACK]
    assert "health gate at 10%: error rate 30.0% against 0.5%" in transitions[-2].reason


def test_an_invalid_stored_config_fails_validation(conn: psycopg.Connection) -> None:
    body = demo_config()
    body["placements"]["banner_home"]["waterfall"] = []  # passes the parse, not the checks
    conn.execute(
        "INSERT INTO config_snapshots (app_id, version, body, checksum, created_by) "
        "VALUES ('pub', 2, %s, 'x', 'test')",
        (psycopg.types.json.Jsonb(body),),
    )
    operation = start_publish(conn, "pub", 2, INSTANT, "test")
    assert _run_until_settled(conn, Cohorts(), operation.id) == FAILED
    failed = get_operation(conn, operation.id)
    assert failed is not None and "must not be empty" in (failed.reason or "")


def test_manual_rollback_of_a_published_operation(conn: psycopg.Connection) -> None:
    operation = start_publish(conn, "pub", _v2(conn), INSTANT, "test")
    _run_until_settled(conn, Cohorts(), operation.id)
    rolling = request_rollback(conn, operation.id, "ops", "customer complaint")
    assert rolling.state == ROLLING_BACK
    assert _run_until_settled(conn, Cohorts(), operation.id) == ROLLED_BACK
    with pytest.raises(PublishError) as caught:
        request_rollback(conn, operation.id, "ops", "again")
    assert caught.value.code == "not_rollbackable"


def test_only_the_latest_published_operation_can_be_rolled_back(conn: psycopg.Connection) -> None:
    first = start_publish(conn, "pub", _v2(conn), INSTANT, "test")
    _run_until_settled(conn, Cohorts(), first.id)
    push_config(conn, "pub", demo_config(grace_ms=777), "test")
    second = start_publish(conn, "pub", 3, INSTANT, "test")
    _run_until_settled(conn, Cohorts(), second.id)
    with pytest.raises(PublishError) as caught:
        request_rollback(conn, first.id, "ops", "old")
    assert caught.value.code == "not_latest"


def test_a_step_read_twice_is_applied_once(conn: psycopg.Connection) -> None:
    operation = start_publish(conn, "pub", _v2(conn), INSTANT, "test")
    step = Step(VALIDATING, 0, 0, "picked up")
    assert apply_step(conn, operation, step, "a") is True
    assert apply_step(conn, operation, step, "b") is False  # the stale read loses
    assert [t.to_state for t in list_transitions(conn, operation.id)] == [PENDING, VALIDATING]


def test_concurrent_workers_apply_every_transition_exactly_once(settings: Settings) -> None:
    seed_app(settings.database_url, "pub", demo_config())
    operations = []
    with connect(settings.database_url, autocommit=True) as conn:
        for app in ("a1", "a2", "a3"):
            seed_app(settings.database_url, app, demo_config())
            version = push_config(conn, app, demo_config(grace_ms=4_321), "test")[0].version
            operations.append(start_publish(conn, app, version, INSTANT, "test").id)

    def work() -> None:
        with connect(settings.database_url, autocommit=True) as own:
            for _ in range(30):
                advance_once(own, Cohorts())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with connect(settings.database_url, autocommit=True) as conn:
        for operation_id in operations:
            operation = get_operation(conn, operation_id)
            assert operation is not None and operation.state == PUBLISHED
            moves = Counter(
                (t.from_state, t.to_state, t.stage) for t in list_transitions(conn, operation_id)
            )
            assert max(moves.values()) == 1, moves
            assert len(moves) == 5


@pytest.mark.parametrize("stop_after", range(1, 5))
def test_a_worker_stopped_after_any_step_is_resumed_by_another(
    conn: psycopg.Connection, settings: Settings, stop_after: int
) -> None:
    operation = start_publish(conn, "pub", _v2(conn), INSTANT, "test")
    for _ in range(stop_after):  # the first worker applies a step per pass, then is gone
        advance_once(conn, Cohorts())
    with connect(settings.database_url, autocommit=True) as fresh:
        assert _run_until_settled(fresh, Cohorts(), operation.id) == PUBLISHED
    assert len(list_transitions(conn, operation.id)) == 5
