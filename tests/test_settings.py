"""Settings: one clear line naming the variable; secrets never in repr."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from mediation.settings import (
    CHECKED_ELSEWHERE,
    PROCESS_KNOBS,
    PROJECT_ROOT,
    Settings,
    SettingsError,
)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"SUPABASE_DB_URL": "http://x"}, "SUPABASE_DB_URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "nohostport"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"KAFKA_TOPIC_PREFIX": "bad prefix"}, "KAFKA_TOPIC_PREFIX"),
        ({"COLD_STORAGE_URL": "ftp://x"}, "COLD_STORAGE_URL"),
        ({"MEDIATION_ADMIN_TOKEN": "short"}, "MEDIATION_ADMIN_TOKEN"),
        ({"MEDIATION_KAFKA_PARTITIONS": "many"}, "MEDIATION_KAFKA_PARTITIONS"),
        ({"AWS_ENDPOINT_URL": "127.0.0.1:9000"}, "AWS_ENDPOINT_URL"),
        ({"MEDIATION_ACCESS_LOG": "true"}, "MEDIATION_ACCESS_LOG"),
        # Knobs other modules read: checked here, at start, all the same.
        ({"MEDIATION_ALLOWED_LATENESS_MS": "5s"}, "MEDIATION_ALLOWED_LATENESS_MS"),
        ({"MEDIATION_DEFAULT_CLOSURE_WINDOW_MS": "-1"}, "MEDIATION_DEFAULT_CLOSURE_WINDOW_MS"),
        ({"MEDIATION_DEFAULT_GRACE_MS": "1e3"}, "MEDIATION_DEFAULT_GRACE_MS"),
        ({"MEDIATION_TOMBSTONE_TTL_MS": " 60000"}, "MEDIATION_TOMBSTONE_TTL_MS"),
        ({"MEDIATION_DRAIN_SETTLE_MS": "1s"}, "MEDIATION_DRAIN_SETTLE_MS"),
        ({"MEDIATION_GC_INTERVAL_MS": "off"}, "MEDIATION_GC_INTERVAL_MS"),
        ({"MEDIATION_SINK_WRITERS": "two"}, "MEDIATION_SINK_WRITERS"),
        ({"MEDIATION_WORKER_METRICS_PORT": "x"}, "MEDIATION_WORKER_METRICS_PORT"),
        ({"MEDIATION_WORKER_METRICS_HOST": "a b"}, "MEDIATION_WORKER_METRICS_HOST"),
        ({"MEDIATION_WORKER_MEMBER": "2/2"}, "MEDIATION_WORKER_MEMBER"),
        ({"MEDIATION_WORKER_PARTITIONS": "0,,1"}, "MEDIATION_WORKER_PARTITIONS"),
        ({"MEDIATION_PREVIOUS_TOPIC_PREFIX": "old."}, "MEDIATION_PREVIOUS_TOPIC_PREFIX"),
        ({"MEDIATION_PREVIOUS_TOPIC_PREFIX": "o ld.@1"}, "MEDIATION_PREVIOUS_TOPIC_PREFIX"),
        ({"MEDIATION_PREVIOUS_TOPIC_PREFIX": "old.@soon"}, "MEDIATION_PREVIOUS_TOPIC_PREFIX"),
        (
            {"KAFKA_TOPIC_PREFIX": "same.", "MEDIATION_PREVIOUS_TOPIC_PREFIX": "same.@1"},
            "MEDIATION_PREVIOUS_TOPIC_PREFIX",
        ),
        ({"MEDIATION_CRASH_AT": "before_write:0"}, "MEDIATION_CRASH_AT"),
        ({"MEDIATION_CRASH_AT": "sometime:3"}, "MEDIATION_CRASH_AT"),
        ({"MEDIATION_LOG_LEVEL": "LOUD"}, "MEDIATION_LOG_LEVEL"),
        ({"MEDIATION_LOG_LEVEL": "info"}, "MEDIATION_LOG_LEVEL"),  # logging takes upper case
        ({"MEDIATION_LOG_LEVEL": ""}, "MEDIATION_LOG_LEVEL"),  # logging refuses it too
        ({"MEDIATION_DB_CPUS": "four"}, "MEDIATION_DB_CPUS"),
        ({"MEDIATION_POOLER_PORT": "70000"}, "MEDIATION_POOLER_PORT"),
        ({"MEDIATION_POOLER_PORT": ""}, "MEDIATION_POOLER_PORT"),
        ({"MEDIATION_TIER_CRASH_AFTER": "dropped"}, "MEDIATION_TIER_CRASH_AFTER"),
        ({"MEDIATION_PUBLISH_CRASH_AFTER": "rolling_out:x"}, "MEDIATION_PUBLISH_CRASH_AFTER"),
        ({"MEDIATION_PUBLISH_CRASH_AFTER": "nowhere"}, "MEDIATION_PUBLISH_CRASH_AFTER"),
    ],
)
def test_malformed_setting_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env(env)
    assert str(error.value).startswith(f"{variable}:")
    assert "\n" not in str(error.value)


def test_supabase_url_wins_over_database_url() -> None:
    settings = Settings.from_env(
        {"SUPABASE_DB_URL": "postgresql://a@supabase/db", "DATABASE_URL": "postgresql://b@local/db"}
    )
    assert settings.database_url == "postgresql://a@supabase/db"


def test_secrets_never_appear_in_repr() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://user:hunter2secret@db/x",
            "REDIS_URL": "redis://:redispass@r:6379/0",
            "MEDIATION_ADMIN_TOKEN": "token-token-token-token",
        }
    )
    text = repr(settings)
    assert "hunter2secret" not in text and "redispass" not in text and "token-token" not in text
    assert "***" in text


def test_cli_prints_one_line_and_exits_2_on_a_bad_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mediation", "migrate"],
        capture_output=True,
        text=True,
        env={"DATABASE_URL": "mysql://nope", "PATH": ""},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mediation migrate: configuration error: DATABASE_URL: expected a postgresql:// URL, "
        "got scheme 'mysql'"
    ]


def test_well_formed_knobs_and_empty_defaults_are_accepted() -> None:
    Settings.from_env(
        {
            "MEDIATION_ALLOWED_LATENESS_MS": "0",
            "MEDIATION_GC_INTERVAL_MS": "",  # empty: the reader's default
            "MEDIATION_LOG_LEVEL": "WARNING",
            "MEDIATION_CRASH_AT": "after_write:3",
            "MEDIATION_TIER_CRASH_AFTER": "verified",
            "MEDIATION_PUBLISH_CRASH_AFTER": "rolling_out:1",
            "MEDIATION_POOLER_PORT": "6432",
            "MEDIATION_WORKER_METRICS_HOST": "0.0.0.0",
            "MEDIATION_ACCESS_LOG": "1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        }
    )


def test_a_previous_generation_takes_opportunities_minted_before_its_end() -> None:
    from mediation.rules.ulid import encode_ulid

    settings = Settings.from_env(
        {"KAFKA_TOPIC_PREFIX": "g2.", "MEDIATION_PREVIOUS_TOPIC_PREFIX": "g1.@1000000"}
    )
    assert settings.topics_for(encode_ulid(999_999, bytes(10))).events == "g1.events.v1"
    assert settings.topics_for(encode_ulid(1_000_000, bytes(10))).events == "g2.events.v1"
    alone = Settings.from_env({"KAFKA_TOPIC_PREFIX": "g2."})
    assert alone.topics_for(encode_ulid(1, bytes(10))).opportunities == "g2.opportunities.v1"


def test_every_mediation_variable_the_code_reads_is_checked_at_start() -> None:
    """A knob read anywhere (often in a child process) must fail at start, not there."""
    from_env = (PROJECT_ROOT / "mediation" / "settings.py").read_text()
    read: set[str] = set()
    for package in ("mediation", "gateway", "dataflows", "sinks", "storage", "replay"):
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            read |= set(re.findall(r'"(MEDIATION_[A-Z0-9_]+)"', path.read_text()))
    checked = set(PROCESS_KNOBS) | set(CHECKED_ELSEWHERE)
    checked |= {
        name for name in read if f'env.get("{name}"' in from_env or f'"{name}", ' in from_env
    }
    assert read - checked == set()
