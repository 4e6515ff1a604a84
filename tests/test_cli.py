"""Every CLI command answers --help."""

from __future__ import annotations

import pytest

from mediation.cli import build_parser, main

COMMANDS = [
    "dev",
    "migrate",
    "partitions",
    "tier",
    "replay",
    "seed",
    "keys",
    "dlq",
    "api",
    "ingest",
    "worker",
    "simulate",
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


def test_worker_flags_mirror_bytewax_run() -> None:
    args = build_parser().parse_args(
        ["worker", "-w", "2", "-i", "1", "-a", "a:1;b:1", "-r", "/rec", "-s", "30", "-b", "600"]
    )
    assert (args.workers, args.process_id, args.addresses, args.recovery_directory) == (
        2,
        1,
        "a:1;b:1",
        "/rec",
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--table", "nope"], "unknown table(s) nope"),
        (["--hot-days", "0"], "--hot-days must be >= 1"),
        (["--hot-days-for", "event_records=0"], "TABLE=DAYS"),
    ],
)
def test_tier_refuses_bad_flags_before_touching_anything(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tier", *flags]) == 2
    assert message in capsys.readouterr().err
