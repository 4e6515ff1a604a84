"""Settings: one clear line naming the variable; secrets never in repr; one reader, one table."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import mediation.settings
from mediation.membership import Membership
from mediation.settings import Settings, SettingsError, default_data_dir

ROOT = Path(__file__).resolve().parent.parent


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
        ({"MEDIATION_WORKER_METRICS_PORT": "70000"}, "MEDIATION_WORKER_METRICS_PORT"),
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
        ({"MEDIATION_GATEWAY_ROLES": "admin"}, "MEDIATION_GATEWAY_ROLES"),
        ({"MEDIATION_GATEWAY_ROLES": "api,"}, "MEDIATION_GATEWAY_ROLES"),
        ({"MEDIATION_COLD_STORAGE_CLASS": "GLACIER"}, "MEDIATION_COLD_STORAGE_CLASS"),
        ({"MEDIATION_COLD_STORAGE_CLASS": "standard_ia"}, "MEDIATION_COLD_STORAGE_CLASS"),
        ({"AWS_REGION": "eu west 1"}, "AWS_REGION"),
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


def test_values_are_read_into_settings_and_worker_settings() -> None:
    settings = Settings.from_env(
        {
            "MEDIATION_LOG_LEVEL": "DEBUG",
            "MEDIATION_GATEWAY_ROLES": "ingest",
            "MEDIATION_COLD_STORAGE_CLASS": "GLACIER_IR",
            "MEDIATION_DB_CPUS": "8",
            "MEDIATION_POOLER_PORT": "7432",
            "MEDIATION_TIER_CRASH_AFTER": "recorded",
            "MEDIATION_PUBLISH_CRASH_AFTER": "rolling_out:2",
            "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "MEDIATION_ALLOWED_LATENESS_MS": "1000",
            "MEDIATION_DEFAULT_GRACE_MS": "7",
            "MEDIATION_WORKER_MEMBER": "1/3",
            "MEDIATION_WORKER_PARTITIONS": "0,2",  # wins over the member
            "MEDIATION_SINK_WRITERS": "0",  # at least one writer
            "MEDIATION_WORKER_METRICS_PORT": "9464",
            "MEDIATION_CRASH_AT": "after_write:2",
        }
    )
    assert settings.log_level == "DEBUG"
    assert settings.gateway_roles == frozenset({"ingest"})
    assert settings.cold_storage_class == "GLACIER_IR"
    assert (settings.db_cpus, settings.pooler_port) == (8, 7432)
    assert settings.tier_crash_after == "recorded"
    assert settings.publish_crash_after == "rolling_out:2"
    assert (settings.aws_region, settings.aws_credentials_set) == ("eu-west-1", True)
    worker = settings.worker
    assert (worker.policy.allowed_lateness_ms, worker.policy.default_grace_ms) == (1000, 7)
    assert worker.membership == Membership.parse_partitions("0,2")
    assert (worker.sink_writers, worker.metrics_port, worker.metrics_host) == (1, 9464, "127.0.0.1")
    assert worker.crash_at == "after_write:2"

    defaults = Settings.from_env({"MEDIATION_GATEWAY_ROLES": "", "MEDIATION_DB_CPUS": ""})
    assert defaults.gateway_roles == frozenset({"api", "ingest"})
    assert (defaults.cold_storage_class, defaults.db_cpus, defaults.pooler_port) == (
        "STANDARD_IA",
        0,
        6432,
    )
    assert defaults.tier_crash_after is None and defaults.publish_crash_after is None
    assert (defaults.aws_region, defaults.aws_credentials_set) == ("us-east-1", False)
    assert defaults.worker.membership == Membership()
    assert defaults.worker.crash_at is None


# -- the default data directory ----------------------------------------------------


def test_a_source_checkout_keeps_its_data_in_the_checkout(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    found = default_data_dir("/state", packages_root=tmp_path, home=tmp_path / "home")
    assert found == tmp_path / ".mediation"


def test_an_installed_project_keeps_its_data_in_the_state_directory(tmp_path: Path) -> None:
    site_packages = tmp_path / "site-packages"  # no pyproject.toml next to the packages
    site_packages.mkdir()
    home = tmp_path / "home"
    state = tmp_path / "state"
    assert default_data_dir(str(state), site_packages, home) == state / "mediation"
    assert default_data_dir("", site_packages, home) == home / ".local/state/mediation"
    # A relative XDG_STATE_HOME is invalid (XDG base directory specification): ignored.
    assert default_data_dir("state", site_packages, home) == home / ".local/state/mediation"


def test_settings_use_the_state_directory_when_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_packages = tmp_path / "lib" / "site-packages"
    site_packages.mkdir(parents=True)
    monkeypatch.setattr(mediation.settings, "_PACKAGES_ROOT", site_packages)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    state = tmp_path / "state"
    settings = Settings.from_env({"XDG_STATE_HOME": str(state)})
    assert settings.data_dir == state / "mediation"
    assert settings.cold_storage_url == (state / "mediation" / "cold").as_uri()
    assert Settings.from_env({}).data_dir == tmp_path / "home/.local/state/mediation"
    chosen = tmp_path / "chosen"
    assert Settings.from_env({"MEDIATION_DATA_DIR": str(chosen)}).data_dir == chosen


def test_this_checkout_keeps_its_data_in_the_checkout() -> None:
    assert Settings.from_env({"XDG_STATE_HOME": "/elsewhere"}).data_dir == ROOT / ".mediation"


# -- one reader, one table -----------------------------------------------------------

# The packages whose modules must take their settings from mediation/settings.py.
PACKAGES = ("mediation", "gateway", "dataflows", "sinks", "storage", "replay")
SETTINGS_MODULE = ROOT / "mediation" / "settings.py"


class _RecordingEnvironment(Mapping[str, str]):
    """An empty environment that remembers every variable asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        self.asked.add(str(name))
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _documented_variables() -> set[str]:
    """The first column of the table of docs/contracts.md section 1."""
    text = (ROOT / "docs" / "contracts.md").read_text()
    section = text.split("\n## 1. Environment\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "no table in docs/contracts.md section 1"
    names: set[str] = set()
    for row in rows:
        first_cell = row.split("|")[1]
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def _variables_read_by_settings() -> set[str]:
    recording = _RecordingEnvironment()
    Settings.from_env(recording)
    # And every name the module's text passes to a reader, read on some path or not.
    text = SETTINGS_MODULE.read_text()
    written = set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]*)"', text))
    return recording.asked | written


def test_the_environment_table_lists_exactly_what_settings_read() -> None:
    documented, read = _documented_variables(), _variables_read_by_settings()
    assert read - documented == set(), "read by mediation/settings.py, not in the table"
    assert documented - read == set(), "in the table, never read by mediation/settings.py"


def _environment_reads(path: Path) -> list[int]:
    """Where a module reads the environment: os.environ.get, os.getenv, os.environ[...], in."""
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def is_environ(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "environ"
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )

    for node in ast.walk(tree):
        reads = (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and (
                (node.func.attr == "get" and is_environ(node.func.value))
                or (
                    node.func.attr == "getenv"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "os"
                )
            )
        )
        reads |= (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and is_environ(node.value)
        )
        reads |= isinstance(node, ast.Compare) and any(
            isinstance(op, ast.In | ast.NotIn) and is_environ(right)
            for op, right in zip(node.ops, node.comparators, strict=True)
        )
        reads |= (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ("environ", "getenv") for alias in node.names)
        )
        if reads:
            found.append(getattr(node, "lineno", 0))
    return found


# The one read outside settings.py: MEDIATION_RULES_BUILD picks the compiled or
# the interpreted rules as ``mediation`` is imported, before the rules (which
# settings.py itself imports) and so before settings exist. settings.py reads
# and validates the same variable, so the table and the test above hold it.
BUILD_SWITCH = ROOT / "mediation" / "native.py"


def test_no_module_but_settings_reads_the_environment() -> None:
    """Writes for child processes (mediation/cli) are fine; reads belong to settings.py."""
    reads = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path != SETTINGS_MODULE:
                reads += [f"{path.relative_to(ROOT)}:{n}" for n in _environment_reads(path)]
    switch = [read for read in reads if read.startswith("mediation/native.py:")]
    assert len(switch) == 1, "mediation/native.py reads the environment exactly once"
    assert "os.environ.get(ENV_VARIABLE" in BUILD_SWITCH.read_text()
    assert [read for read in reads if read not in switch] == []


def test_the_scan_sees_each_way_of_reading_the_environment(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\n"
        "from os import getenv\n"
        "a = os.environ.get('A')\n"
        "b = os.getenv('B')\n"
        "c = os.environ['C']\n"
        "d = 'D' in os.environ\n"
        "os.environ['E'] = 'written for a child'\n"
        "os.environ.pop('F', None)\n"
    )
    assert sorted(_environment_reads(probe)) == [2, 3, 4, 5, 6]


# -- users of the settings ------------------------------------------------------------


def test_the_tier_crash_drill_fires_once_after_its_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from storage import tier_job

    killed: list[int] = []
    # SIGKILL would end the test run: record it instead.
    monkeypatch.setattr(os, "kill", lambda pid, signal: killed.append(signal))
    monkeypatch.setattr(tier_job, "_crash_after", None)
    tier_job.arm_crash_drill(
        Settings.from_env({"MEDIATION_TIER_CRASH_AFTER": "verified"}).tier_crash_after
    )
    tier_job._crash_drill("exported")
    assert killed == []
    tier_job._crash_drill("verified")
    tier_job._crash_drill("verified")  # once per process
    assert len(killed) == 1
    with pytest.raises(ValueError):
        tier_job.arm_crash_drill("dropped")


def test_the_s3_cold_store_takes_region_and_credentials_from_the_settings() -> None:
    from storage.cold import S3ColdStore, cold_store_for

    settings = Settings.from_env(
        {
            "COLD_STORAGE_URL": "s3://bucket/prefix",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_REGION": "eu-west-1",
        }
    )
    store = cold_store_for(settings)
    assert isinstance(store, S3ColdStore)
    assert store._client.meta.region_name == "eu-west-1"
    assert store._local_credentials  # the local S3 server: placeholder credentials
    with_keys = cold_store_for(
        Settings.from_env(
            {
                "COLD_STORAGE_URL": "s3://bucket/prefix",
                "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
                "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            }
        )
    )
    assert isinstance(with_keys, S3ColdStore) and not with_keys._local_credentials
