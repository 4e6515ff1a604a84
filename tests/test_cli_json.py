"""--json on the read commands, and ``dlq show`` / ``dlq discard``, against a real Postgres."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from mediation.cli import main
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app
from storage.db import connect
from storage.deadletters import list_dead_letters
from storage.partitions import ensure_partitions

pytestmark = pytest.mark.integration

DAY = dt.date(2031, 1, 2)
PAYLOAD = b'{"bad": "\x1b[31mred\x00"}'
BINARY = b"\xff\xfe\x00 not utf-8"


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("SUPABASE_DB_URL", raising=False)
    monkeypatch.setenv("COLD_STORAGE_URL", (tmp_path / "cold").as_uri())
    return database_url


def _json(capsys: pytest.CaptureFixture[str], *words: str, status: int = 0) -> Any:
    assert main(list(words)) == status
    captured = capsys.readouterr()
    return json.loads(captured.out)


def _dead_letters(database_url: str) -> None:
    """A pending letter with a source position, a pending one without, a re-driven one."""
    with connect(database_url) as conn:
        ensure_partitions(conn, [DAY], tables=["dead_letters"])
        conn.execute(
            "INSERT INTO dead_letters (day, id, reason, detail, app_id, source_topic, "
            "source_partition, source_offset, payload, redrive_status, created_at) VALUES "
            "(%s, 't:0:7', 'invalid_json', 'bad\nline', 'a1', 'mediation.events.v1', 0, 7, %s, "
            " 'pending', '2031-01-02T10:00:00Z'), "
            "(%s, 'rule:x', 'duplicate_conflict', 'dup', 'a1', NULL, NULL, NULL, %s, "
            " 'pending', '2031-01-02T11:00:00Z'), "
            "(%s, 't:0:8', 'invalid_json', 'old', 'a1', 'mediation.events.v1', 0, 8, %s, "
            " 'redriven', '2031-01-02T09:00:00Z')",
            (DAY, PAYLOAD, DAY, BINARY, DAY, b"{}"),
        )
        conn.commit()


def _statuses(database_url: str) -> dict[str, str]:
    return {d.id: d.redrive_status for d in list_dead_letters(database_url)}


def test_dlq_list_json(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    _dead_letters(cli_env)
    document = _json(capsys, "dlq", "list", "--status", "pending", "--json")
    letters = document["dead_letters"]
    assert [d["id"] for d in letters] == ["rule:x", "t:0:7"]  # newest first
    assert set(letters[1]) == {
        "id", "day", "created_at", "reason", "detail", "app_id", "opportunity_key",
        "source_topic", "source_partition", "source_offset", "redrive_status", "payload_bytes",
    }  # fmt: skip
    assert letters[1]["created_at"] == "2031-01-02T10:00:00Z"
    assert letters[1]["day"] == "2031-01-02"
    assert letters[1]["payload_bytes"] == len(PAYLOAD)


def test_dlq_show_prints_every_column_and_the_payload_safely(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _dead_letters(cli_env)
    text_letter = _json(capsys, "dlq", "show", "t:0:7", "--json")
    assert text_letter["payload_encoding"] == "utf-8"
    assert text_letter["payload"].encode() == PAYLOAD
    assert text_letter["source_offset"] == 7 and text_letter["detail"] == "bad\nline"
    binary_letter = _json(capsys, "dlq", "show", "rule:x", "--json")
    assert binary_letter["payload_encoding"] == "base64"
    assert binary_letter["payload"] == "//4AIG5vdCB1dGYtOA=="

    assert main(["dlq", "show", "t:0:7"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x00" not in out  # nothing reaches the terminal raw
    assert "\\x1b[31mred\\x00" in out
    assert "detail:            bad\\nline" in out
    assert "source_topic:      mediation.events.v1" in out

    assert main(["dlq", "show", "nope"]) == 2
    assert capsys.readouterr().err.splitlines() == ["mediation dlq: no dead letter 'nope'"]


def test_dlq_discard_marks_only_pending_letters_and_redrive_skips_them(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _dead_letters(cli_env)
    before = _statuses(cli_env)

    assert main(["dlq", "discard", "--app-id", "a1"]) == 0  # a dry run
    assert "would discard (dry run; add --yes) 2 pending" in capsys.readouterr().out
    assert _statuses(cli_env) == before

    assert main(["dlq", "discard", "--id", "t:0:7", "--id", "t:0:8", "--yes"]) == 0
    assert "discarded 1 pending" in capsys.readouterr().out
    assert _statuses(cli_env) == {"t:0:7": "discarded", "rule:x": "pending", "t:0:8": "redriven"}

    assert main(["dlq", "discard", "--reason", "duplicate_conflict", "--yes"]) == 0
    assert "discarded 1 pending" in capsys.readouterr().out
    assert _statuses(cli_env) == {"t:0:7": "discarded", "rule:x": "discarded", "t:0:8": "redriven"}

    assert main(["dlq", "redrive", "--yes"]) == 0
    assert "re-drove 0 dead letter(s); skipped 0" in capsys.readouterr().out
    assert _statuses(cli_env)["t:0:7"] == "discarded"


def test_keys_list_json(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    key = new_app_key()
    seed_app(cli_env, "keyed", demo_config(), key)
    document = _json(capsys, "keys", "list", "--app-id", "keyed", "--json")
    assert document["app_id"] == "keyed"
    (listed,) = document["keys"]
    assert set(listed) == {"prefix", "created_at", "revoked_at"}
    assert key.startswith(listed["prefix"]) and listed["revoked_at"] is None
    assert listed["created_at"].endswith("Z")
    dt.datetime.fromisoformat(listed["created_at"])


def test_config_list_ops_and_op_json(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_app(cli_env, "cfg", demo_config(), new_app_key())  # v1, published
    body = tmp_path / "v2.json"
    body.write_text(json.dumps(demo_config(grace_ms=20_000)))
    assert main(["config", "push", str(body), "--app-id", "cfg"]) == 0
    assert main(["config", "publish", "--app-id", "cfg", "--version", "2", "--plan", "100"]) == 0
    capsys.readouterr()

    versions = _json(capsys, "config", "list", "--app-id", "cfg", "--json")["versions"]
    assert [v["version"] for v in versions] == [2, 1]  # newest first
    assert set(versions[0]) == {"version", "checksum", "created_at", "created_by"}

    document = _json(capsys, "config", "ops", "--app-id", "cfg", "--json")
    operation = document["operations"][0]  # newest first: the publish of v2
    assert set(operation) == {
        "id", "app_id", "version", "previous_version", "state", "stage", "stages",
        "rollout_percent", "plan", "thresholds", "reason", "created_by", "created_at",
        "updated_at",
    }  # fmt: skip
    assert (operation["app_id"], operation["version"], operation["previous_version"]) == (
        "cfg",
        2,
        1,
    )
    assert operation["plan"] == [{"percent": 100, "dwell_ms": 0}]
    assert set(operation["thresholds"]) >= {"min_requests", "max_error_rate_increase"}

    one = _json(capsys, "config", "op", "--operation-id", str(operation["id"]), "--json")
    assert one["id"] == operation["id"]
    assert one["transitions"] and set(one["transitions"][0]) == {
        "from_state", "to_state", "stage", "rollout_percent", "reason", "actor", "at",
    }  # fmt: skip


def test_a_refused_publish_is_one_line_and_a_usage_error(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "publish", "--app-id", "nobody", "--version", "1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "mediation config: app 'nobody' has no config version 1"
    ]


def test_tier_dry_run_json(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    today = dt.date(2026, 11, 25)
    with connect(cli_env, autocommit=True) as conn:
        ensure_partitions(conn, [dt.date(2026, 11, 20), today], ["event_records"])
    document = _json(
        capsys,
        "tier", "--dry-run", "--json", "--table", "event_records", "--today", str(today),
        "--older-than", "3",
    )  # fmt: skip
    assert document["dry_run"] is True and document["today"] == "2026-11-25"
    assert document["hot_days"] == 3 and document["storage_class"] == "STANDARD_IA"
    assert document["days"] == [
        {"table": "event_records", "day": "2026-11-20", "rows": 0, "action": "would tier"}
    ]
    assert {"cold_storage_url", "warm_days", "retain_days", "hot_days_for"} <= set(document)


def test_replay_json_prints_the_summary(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    document = _json(capsys, "replay", "--from", "2031-01-01", "--to", "2031-01-02", "--json")
    assert set(document) == {"replay_id", "mode", "summary", "result_hash", "written_to"}
    assert document["summary"]["records"] == 0 and document["mode"] == "snapshot"
    assert len(document["result_hash"]) == 64

    assert main(["replay", "--from", "0", "--to", "1", "--json", "--format", "jsonl"]) == 2
    assert "give --output" in capsys.readouterr().err


def test_gate_json(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.delenv("SUPABASE_DB_URL", raising=False)
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", settings.topic_prefix)
    document = _json(capsys, "gate", "--results", str(tmp_path / "none"), "--json", status=1)
    assert document["go"] is False
    assert document["total"] == len(document["checks"]) and document["passed"] < document["total"]
    assert all(set(check) == {"item", "passed", "detail"} for check in document["checks"])
