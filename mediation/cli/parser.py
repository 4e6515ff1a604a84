"""The argument parser: every command's summary, and the arguments of those asked for."""

from __future__ import annotations

import argparse

from mediation import __version__
from mediation.cli.commands import COMMANDS, load_command

__all__ = ["build_parser", "command_in"]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``mediation`` parser; with ``only``, just that command's module is imported.

    Every command is listed (with its summary) either way; the other commands'
    arguments are left out, which is all ``main`` needs to run one command.
    """
    parser = argparse.ArgumentParser(
        prog="mediation",
        description="Ad-mediation event pipeline: gateway, dataflow worker, storage and tools. "
        "Settings come from the environment (DATABASE_URL, REDIS_URL, "
        "KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC_PREFIX, COLD_STORAGE_URL, ...). "
        'Shell completion: eval "$(register-python-argcomplete mediation)".',
    )
    parser.add_argument("--version", action="version", version=f"mediation {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, info in COMMANDS.items():
        command = sub.add_parser(name, help=info.summary, description=info.summary)
        if only is None or name == only:
            module = load_command(name)
            module.add_arguments(command)
            if hasattr(module, "run"):
                command.set_defaults(handler=module.run)
    return parser


def command_in(argv: list[str]) -> str | None:
    """The command ``argv`` names (the first word; the top-level flags take no value)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None
