"""The publish worker killed (SIGKILL) right after entering each state, then restarted.

``MEDIATION_PUBLISH_CRASH_AFTER`` makes ``mediation publish-worker`` kill
itself just after committing a transition into the named state. A fresh
worker must finish the operation, with every transition applied exactly
once and the audit trail complete.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import redis
from psycopg.types.json import Jsonb

from mediation.rules.publish import HealthThresholds, Stage, cohort_field, cohort_key
from mediation.settings import Settings
from mediation.sim.processes import mediation_command, running
from mediation.sim.seed import demo_config, seed_app
from storage.configs import get_operation, list_transitions, push_config, start_publish
from storage.db import connect

pytestmark = pytest.mark.integration

PLAN = (Stage(50, 500), Stage(100, 0))


def _bad_cohort(settings: Settings) -> None:
    """The new version's cohort errs on half its requests; the previous one never."""
    client = redis.Redis.from_url(settings.redis_url)
    minute = int(time.time() * 1000) // 60_000
    for version, errors in ((2, 50), (1, 0)):
        key = cohort_key(settings.topic_prefix, "kill", version)
        for m in (minute, minute + 1):
            client.hset(key, mapping={cohort_field(m, "r"): 100, cohort_field(m, "e"): errors})
        client.expire(key, 600)
    client.close()


@pytest.mark.parametrize(
    ("crash_after", "scenario", "final"),
    [
        ("validating", "healthy", "published"),
        ("rolling_out:0", "healthy", "published"),
        ("rolling_out:1", "healthy", "published"),
        ("published", "healthy", "published"),
        ("failed", "invalid", "failed"),
        ("rolling_back", "regressing", "rolled_back"),
        ("rolled_back", "regressing", "rolled_back"),
    ],
)
def test_a_killed_publish_worker_is_finished_by_the_next(
    settings: Settings,
    child_env: dict[str, str],
    crash_after: str,
    scenario: str,
    final: str,
) -> None:
    seed_app(settings.database_url, "kill", demo_config())
    with connect(settings.database_url, autocommit=True) as conn:
        if scenario == "invalid":
            body = demo_config()
            body["placements"]["banner_home"]["waterfall"] = []  # refused by validation
            conn.execute(
                "INSERT INTO config_snapshots (app_id, version, body, checksum, created_by) "
                "VALUES ('kill', 2, %s, 'x', 'test')",
                (Jsonb(body),),
            )
        else:
            push_config(conn, "kill", demo_config(grace_ms=6_000), "test")
        if scenario == "regressing":
            _bad_cohort(settings)
        operation = start_publish(conn, "kill", 2, PLAN, "test", HealthThresholds(min_requests=1))

    crashing = {**child_env, "MEDIATION_PUBLISH_CRASH_AFTER": crash_after}
    argv = mediation_command("publish-worker", "--interval", "0.1")
    with running("publish-worker", argv, crashing, settings.data_dir / "crash.log") as worker:
        deadline = time.monotonic() + 30
        while worker.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not worker.alive(), "the drill did not fire"
    with connect(settings.database_url, autocommit=True) as conn:
        killed_in = get_operation(conn, operation.id)
        assert killed_in is not None
        assert killed_in.state == crash_after.partition(":")[0]

    with (
        running("publish-worker", argv, child_env, settings.data_dir / "next.log"),
        connect(settings.database_url, autocommit=True) as conn,
    ):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            current = get_operation(conn, operation.id)
            if current is not None and current.state == final:
                break
            time.sleep(0.1)
    with connect(settings.database_url, autocommit=True) as conn:
        done = get_operation(conn, operation.id)
        assert done is not None and done.state == final
        moves = Counter(
            (t.from_state, t.to_state, t.stage) for t in list_transitions(conn, operation.id)
        )
        assert max(moves.values()) == 1, moves
        audited = conn.execute(
            "SELECT count(*) FROM audit_records WHERE subject = %s",
            (f"app:kill/operation:{operation.id}",),
        ).fetchone()
        assert audited == (sum(moves.values()),)  # one audit record per transition
