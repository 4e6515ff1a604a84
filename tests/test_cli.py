"""Every CLI command answers --help; every failure is one line with its exit code."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
from pathlib import Path

import pytest

from mediation.cli import main
from mediation.cli.parser import build_parser
from mediation.sim.processes import free_port, mediation_command

COMMANDS = [
    "dev",
    "migrate",
    "partitions",
    "tier",
    "replay",
    "replay-jobs",
    "seed",
    "keys",
    "status",
    "dlq",
    "config",
    "publish-worker",
    "api",
    "ingest",
    "worker",
    "simulate",
    "gate",
    "demo",
]


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: mediation" in capsys.readouterr().out


def test_worker_takes_its_membership_and_recovery_flags() -> None:
    args = build_parser().parse_args(
        ["worker", "--member", "1/3", "-r", "/rec", "-s", "30", "-b", "600"]
    )
    assert (args.member, args.partitions, args.recovery_directory) == ("1/3", None, "/rec")
    assert build_parser().parse_args(["worker", "--partitions", "0,5"]).partitions == "0,5"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--member", "3/3"], "member: expected 0 <= i < N, got '3/3'"),
        (["--member", "one"], "member: expected i/N"),
        (["--partitions", "0,,2"], "partitions: expected a list like 0,3,5"),
        (["--partitions", "1,1"], "names a partition twice"),
        (["--member", "0/2", "--partitions", "1"], "give --member or --partitions, not both"),
    ],
)
def test_worker_refuses_a_bad_membership_in_one_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("mediation worker: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--table", "nope"], "unknown table(s) nope"),
        (["--hot-days", "-1"], "retention must be 0 <= hot days"),
        (["--hot-days-for", "event_records=-1"], "TABLE=DAYS"),
        (["--older-than", "7d"], "--older-than: expected DAYS (an integer >= 0) or a date"),
        (["--older-than", "2999-01-01"], "--older-than: 2999-01-01 is after today"),
        (["--older-than", "7", "--hot-days", "3"], "give --older-than or --hot-days"),
        (["--older-than", "7", "--hot-days-for", "event_records=3"], "give --older-than or"),
    ],
)
def test_tier_refuses_bad_flags_before_touching_anything(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tier", *flags]) == 2
    assert message in capsys.readouterr().err


# -- errors: one line on stderr, the documented exit code, never a traceback ----------


def _run_cli(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process (its own session: on a timeout its whole group goes)."""
    child_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        mediation_command(*args),
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # this test's child and whatever it forked
        out, err = proc.communicate()
        pytest.fail(f"mediation {' '.join(args)} still running after {timeout_s}s:\n{err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def postgres_down() -> dict[str, str]:
    """Settings whose Postgres is a free loopback port: nothing listens there."""
    return {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/mediation"}


@pytest.mark.parametrize(
    "command",
    [
        ["migrate"],
        ["migrate", "--dry-run"],
        ["partitions"],
        ["tier"],
        ["dlq", "list"],
        ["replay", "--from", "2026-01-01", "--to", "2026-01-02"],
        ["replay-jobs", "--once"],
        ["seed"],
        ["keys", "list", "--app-id", "demo"],
        ["config", "list", "--app-id", "demo"],
    ],
    ids=" ".join,
)
def test_postgres_down_is_one_line_and_exit_1(
    command: list[str], postgres_down: dict[str, str], tmp_path: Path
) -> None:
    cold = {"COLD_STORAGE_URL": (tmp_path / "cold").as_uri()}
    result = _run_cli(*command, env={**postgres_down, **cold})
    line = _one_error_line(result)
    assert result.returncode == 1
    assert line.startswith(f"mediation {command[0]}: cannot connect to Postgres"), line
    assert postgres_down["DATABASE_URL"].rsplit(":", 1)[1].split("/")[0] in line  # the port


def test_a_bad_worker_setting_stops_the_worker_before_it_starts() -> None:
    result = _run_cli("worker", "--metrics-port", "0", env={"MEDIATION_ALLOWED_LATENESS_MS": "5s"})
    line = _one_error_line(result)
    assert result.returncode == 2
    assert line == (
        "mediation worker: configuration error: MEDIATION_ALLOWED_LATENESS_MS: expected a "
        "non-negative integer, got '5s'"
    )


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_bad_log_level_stops_the_gateway_before_any_process_starts(processes: str) -> None:
    result = _run_cli(
        "api",
        "--port",
        str(free_port()),
        "--processes",
        processes,
        env={"MEDIATION_LOG_LEVEL": "LOUD"},
        timeout_s=60,
    )
    line = _one_error_line(result)
    assert result.returncode == 2
    assert line.startswith("mediation api: configuration error: MEDIATION_LOG_LEVEL: "), line
    assert "'LOUD'" in line


def test_config_push_of_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = _run_cli("config", "push", str(missing), "--app-id", "demo")
    line = _one_error_line(result)
    assert result.returncode == 2
    assert line == f"mediation config: cannot read {missing}: No such file or directory"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("{bad", "not JSON: Expecting property name enclosed in double quotes: line 1 column 2"),
        ("[1, 2]", "must hold one JSON object, got a list"),
    ],
)
def test_config_push_of_a_malformed_file_is_one_line_and_exit_2(
    body: str, problem: str, tmp_path: Path
) -> None:
    path = tmp_path / "config.json"
    path.write_text(body)
    result = _run_cli("config", "push", str(path), "--app-id", "demo")
    line = _one_error_line(result)
    assert result.returncode == 2
    assert line.startswith(f"mediation config: {path}: {problem}"), line


def test_every_known_failure_becomes_one_line_with_its_exit_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one mechanism in main(): a multi-line message is folded onto one line."""
    import httpx
    import psycopg

    from mediation.cli.commands import migrate
    from mediation.settings import SettingsError
    from storage.cold import ColdStoreError
    from storage.db import DatabaseUnavailableError
    from storage.tiering import TieringError

    cases = [
        (SettingsError("X_Y: bad"), 2, "mediation migrate: configuration error: X_Y: bad"),
        (
            DatabaseUnavailableError("cannot connect to Postgres: refused\n\tIs it running?"),
            1,
            "mediation migrate: cannot connect to Postgres: refused Is it running?",
        ),
        (ColdStoreError("s3://b: timeout"), 1, "mediation migrate: cold storage: s3://b: timeout"),
        (TieringError("t 2026-01-01: no manifest"), 1, "mediation migrate: cold storage: t 2026-01-01: no manifest"),  # noqa: E501
        (
            psycopg.errors.UndefinedTable('relation "apps" does not exist'),
            1,
            'mediation migrate: the database has no schema yet (relation "apps" does not exist); '
            "run `mediation migrate`",
        ),
        (
            psycopg.OperationalError("server closed the connection\nunexpectedly"),
            1,
            "mediation migrate: Postgres: server closed the connection unexpectedly",
        ),
        (
            httpx.ConnectError("[Errno 111] Connection refused"),
            1,
            "mediation migrate: HTTP request failed: [Errno 111] Connection refused",
        ),
    ]  # fmt: skip
    for error, code, line in cases:

        def fail(_args: object, error: Exception = error) -> int:
            raise error

        monkeypatch.setattr(migrate, "run", fail)
        assert main(["migrate"]) == code
        assert capsys.readouterr().err.splitlines() == [line]


def test_an_unexpected_failure_is_one_line_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug is still one line and exit 1; the traceback is for -v."""
    from mediation.cli.commands import migrate

    def fail(_args: object) -> int:
        raise KeyError("boom")

    monkeypatch.setattr(migrate, "run", fail)
    assert main(["migrate"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "mediation migrate: unexpected error KeyError: 'boom' (run with -v for the traceback)"
    ]
    assert "Traceback" not in captured.out + captured.err


# -- tier --older-than DAYS|DATE, --hot-days 0 ---------------------------------------

TIER_TODAY = dt.date(2026, 11, 25)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("flags", "tiered"),
    [
        (["--older-than", "2026-11-22"], ["2026-11-20", "2026-11-21"]),  # strictly before
        (["--older-than", "3"], ["2026-11-20", "2026-11-21"]),  # before today - 3 days
        (["--older-than", "0"], ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-24"]),
        (["--hot-days", "0"], ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-24"]),
        (["--older-than", "2026-11-25"], ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-24"]),
        ([], []),  # the default: 30 days hot
    ],
)
def test_tier_older_than_picks_the_days_before_its_cut_off(
    flags: list[str],
    tiered: list[str],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from storage.db import connect
    from storage.partitions import ensure_partitions

    days = [TIER_TODAY - dt.timedelta(days=n) for n in (5, 4, 3, 1, 0, -1)]
    with connect(database_url, autocommit=True) as conn:
        ensure_partitions(conn, days, ["event_records"])
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("COLD_STORAGE_URL", (tmp_path / "cold").as_uri())

    code = main(
        ["tier", "--dry-run", "--table", "event_records", "--today", str(TIER_TODAY), *flags]
    )

    out = capsys.readouterr().out
    assert code == 0
    listed = [line.split()[1] for line in out.splitlines() if line.startswith("event_records ")]
    assert listed == tiered
    assert all(line.split()[3:] == ["would", "tier"] for line in out.splitlines()
               if line.startswith("event_records "))  # fmt: skip
