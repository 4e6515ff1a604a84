"""Settings: one clear line naming the variable; secrets never in repr."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mediation.settings import Settings, SettingsError


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
        "mediation: configuration error: DATABASE_URL: expected a postgresql:// URL, "
        "got scheme 'mysql'"
    ]
