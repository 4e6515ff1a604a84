"""The command registry, the per-action parsers, and the one place errors become exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mediation.cli import main, status_codes
from mediation.cli.commands import COMMANDS
from mediation.cli.parser import build_parser
from mediation.errors import InputError, ServiceError
from mediation.sim.processes import free_port, mediation_command


def _help(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*words, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _usage_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(words))
    assert exit_info.value.code == status_codes.USAGE
    return capsys.readouterr().err


def test_running_one_command_imports_only_its_module() -> None:
    code = (
        "import sys\n"
        "from mediation.cli.parser import build_parser\n"
        "build_parser(only='migrate').parse_args(['migrate', '--dry-run'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('mediation.cli.commands.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['mediation.cli.commands.migrate']"


def test_every_registered_command_has_a_module_with_arguments() -> None:
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])


@pytest.mark.parametrize(
    ("words", "own", "foreign"),
    [
        (["config", "push"], ["FILE", "--app-id", "--actor"], ["--operation-id", "--plan"]),
        (["config", "publish"], ["--plan", "--wait", "--min-requests"], ["--profile", "file"]),
        (["config", "degrade"], ["--profile", "--reason"], ["--plan", "--wait"]),
        (["config", "ops"], ["--app-id", "--json"], ["--operation-id", "--wait"]),
        (["dlq", "list"], ["--status", "--limit", "--json"], ["--yes", "--id"]),
        (["dlq", "show"], ["id", "--json"], ["--reason", "--yes"]),
        (["dlq", "redrive"], ["--reason", "--yes"], ["--limit", "--status", "--json"]),
        (["dlq", "discard"], ["--reason", "--id", "--yes"], ["--limit", "--json"]),
        (["keys", "revoke"], ["--prefix"], ["--json"]),
        (["keys", "list"], ["--json"], ["--prefix"]),
    ],
)
def test_each_action_has_its_own_help(
    words: list[str], own: list[str], foreign: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help(capsys, *words)
    assert text.startswith(f"usage: mediation {' '.join(words)}")
    for flag in own:
        assert flag in text, flag
    for flag in foreign:
        assert flag not in text, flag


def test_a_command_with_actions_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "config")
    for action in ("push", "list", "show", "diff", "publish", "ops", "op", "rollback", "degrade"):
        assert action in text
    assert "--plan" not in text  # publish's, not config's
    assert all(a in _help(capsys, "dlq") for a in ("list", "show", "redrive", "discard"))
    assert all(a in _help(capsys, "keys") for a in ("list", "create", "revoke"))


@pytest.mark.parametrize(
    ("words", "missing"),
    [
        (["keys", "revoke", "--app-id", "demo"], "--prefix"),
        (["keys", "list"], "--app-id"),
        (["config", "push", "--app-id", "demo"], "FILE"),
        (["config", "publish", "--app-id", "demo"], "--version"),
        (["config", "op"], "--operation-id"),
        (["config", "degrade", "--app-id", "demo", "--profile", "lite"], "--reason"),
        (["config", "diff", "--app-id", "demo"], "--versions"),
        (["dlq", "show"], "id"),
        (["dlq"], "ACTION"),
    ],
)
def test_a_missing_required_option_is_a_usage_error(
    words: list[str], missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error(capsys, *words)
    assert "the following arguments are required" in err and missing in err


@pytest.mark.parametrize(
    "words",
    [
        ["dlq", "list", "--yes"],
        ["dlq", "redrive", "--limit", "5"],
        ["dlq", "redrive", "--status", "pending"],
        ["keys", "list", "--app-id", "demo", "--prefix", "mk_x"],
        ["config", "ops", "--app-id", "demo", "--operation-id", "3"],
        ["config", "push", "x.json", "--app-id", "demo", "--wait"],
        ["config", "op", "--operation-id", "3", "--plan", "100"],
    ],
    ids=" ".join,
)
def test_an_option_the_action_does_not_take_is_refused(
    words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert "unrecognized arguments" in _usage_error(capsys, *words)


def test_todays_invocations_still_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["dlq", "list", "--reason", "invalid_json", "--since-hours", "24"])
    assert (args.action, args.reason, args.since_hours) == ("list", "invalid_json", 24.0)
    args = parser.parse_args(["keys", "revoke", "--app-id", "A", "--prefix", "P"])
    assert (args.app_id, args.prefix) == ("A", "P")
    args = parser.parse_args(["config", "push", "new.json", "--app-id", "demo"])
    assert (args.file, args.app_id) == (Path("new.json"), "demo")
    args = parser.parse_args(["config", "diff", "--app-id", "demo", "--versions", "3", "4"])
    assert args.versions == [3, 4]
    args = parser.parse_args(["dlq", "redrive", "--reason", "unknown_schema", "--yes"])
    assert args.yes


# -- errors: by family, in one place --------------------------------------------------


class _RefusedInputError(InputError):
    code = "test_refused_input"


class _BrokenServiceError(ServiceError):
    code = "test_broken_service"


@pytest.mark.parametrize(
    ("error", "status", "line"),
    [
        (_RefusedInputError("the flag is wrong"), 2, "mediation migrate: the flag is wrong"),
        (_BrokenServiceError("it broke\n  twice"), 1, "mediation migrate: it broke twice"),
        (KeyboardInterrupt(), 130, None),
    ],
)
def test_errors_map_to_exit_codes_by_family(
    error: BaseException,
    status: int,
    line: str | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mediation.cli.commands import migrate

    def fail(_args: object) -> int:
        raise error

    monkeypatch.setattr(migrate, "run", fail)
    assert main(["migrate"]) == status
    assert capsys.readouterr().err.splitlines() == ([line] if line else [])


def test_a_refused_key_operation_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error raised deep in storage reaches main() and exits by its family."""
    from storage import keys

    def refuse(*_args: object) -> None:
        raise keys.KeyOperationError("unknown_key", "no active key of demo starts with mk_x")

    monkeypatch.setattr(keys, "revoke_key", refuse)
    assert main(["keys", "revoke", "--app-id", "demo", "--prefix", "mk_x"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "mediation keys: no active key of demo starts with mk_x"
    ]


def test_tier_refuses_a_storage_class_replay_cannot_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["tier", "--cold-storage-class", "GLACIER"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mediation tier: --cold-storage-class must be one of")
    assert err.count("\n") == 1


# -- --json on a read that fails: still one document, and the status ---------------


def test_status_json_with_nothing_reachable_is_valid_json_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/metrics"
    code = main(["status", "--worker-metrics", nowhere, "--window-s", "0", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 1
    assert set(document) == {"healthy", "workers", "triggers", "unreachable_gateways"}
    assert document["healthy"] is False
    (worker,) = document["workers"]
    assert set(worker) == {"url", "error", "values", "partition_lag", "resident_bytes"}
    assert worker["url"] == nowhere and worker["error"]


# -- shell completion ----------------------------------------------------------------


def test_completion_offers_an_actions_own_options(tmp_path: Path) -> None:
    line = "mediation dlq discard --"
    out = tmp_path / "completions"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        "_ARGCOMPLETE_IFS": "\n",
    }
    subprocess.run(mediation_command(), env=env, check=True, stdin=subprocess.DEVNULL)
    offered = set(out.read_text().split())
    assert {"--reason", "--id", "--yes"} <= offered
    assert "--limit" not in offered
