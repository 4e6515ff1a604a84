"""``main``: parse, run one command, and turn what it raised into one line and an exit status.

This is the one place where failures become exit statuses, by the error tree
of ``mediation.errors``: an ``InputError`` (a setting, a flag, an input, a
refused request) is ``USAGE`` (2), a ``ServiceError`` (a service or a step
failed) is ``FAILED`` (1); a few third-party errors met at the edge get their
own words. Commands let errors propagate instead of each catching them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from mediation.cli import status_codes
from mediation.cli.parser import build_parser, command_in

__all__ = ["describe_failure", "main"]

log = logging.getLogger(__name__)


def describe_failure(exc: BaseException) -> tuple[int, str] | None:
    """The exit status and message of an error a command may meet; None: a bug."""
    import httpx
    import psycopg

    from mediation.errors import InputError, ServiceError
    from mediation.settings import SettingsError
    from storage.cold import ColdStoreError
    from storage.tiering import TieringError

    if isinstance(exc, SettingsError):
        return status_codes.USAGE, f"configuration error: {exc}"
    if isinstance(exc, InputError):
        return status_codes.USAGE, str(exc)
    if isinstance(exc, (ColdStoreError, TieringError)):
        return status_codes.FAILED, f"cold storage: {exc}"
    if isinstance(exc, ServiceError):
        return status_codes.FAILED, str(exc)
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return (
            status_codes.FAILED,
            f"the database has no schema yet ({exc}); run `mediation migrate`",
        )
    if isinstance(exc, psycopg.Error):  # e.g. the connection was lost mid-command
        return status_codes.FAILED, f"Postgres: {exc}"
    if isinstance(exc, httpx.HTTPError):
        return status_codes.FAILED, f"HTTP request failed: {exc}"
    return None


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # One line per HTTP call drowns the output of the simulator and the demo.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return status_codes.INTERRUPTED
    except Exception as exc:
        known = describe_failure(exc)
        # A failure no command expects is a bug: still one line (its type and
        # message), with the traceback in the log under -v for the report.
        status, message = known or (
            status_codes.FAILED,
            f"unexpected error {type(exc).__name__}: {exc}",
        )
        log.debug("mediation %s failed", args.command, exc_info=True)
        if known is None and not args.verbose:
            message += " (run with -v for the traceback)"
        # Library messages may span lines (psycopg adds a hint on its own line).
        print(f"mediation {args.command}: {' '.join(message.split())}", file=sys.stderr)
        return status


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # Only the named command's module is imported; without one (``--help``, a
    # completion request), every command's arguments are there to show.
    parser = build_parser(only=command_in(words))
    import argcomplete

    argcomplete.autocomplete(parser)
    args = parser.parse_args(words)
    _configure_logging(args.verbose)
    return _run(args)
