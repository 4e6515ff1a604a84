"""Helpers the commands share: settings, JSON output, the acting user."""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
import math
import sys
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from mediation.cli.errors import UsageError

if TYPE_CHECKING:
    import argparse

    from mediation.settings import Settings

__all__ = [
    "add_json_flag",
    "day_range",
    "json_ready",
    "print_json",
    "printable",
    "settings",
    "short",
    "user",
]


def settings() -> Settings:
    """The settings, read from the environment once per command (a bad one: exit 2)."""
    from mediation.settings import Settings

    return Settings.from_env()


def user() -> str:
    """The operating-system user running the command, or ``cli`` when there is none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def add_json_flag(
    parser: argparse.ArgumentParser, text: str = "print one JSON document instead of a table"
) -> None:
    parser.add_argument("--json", action="store_true", help=text)


def json_ready(value: object) -> Any:
    """``value`` as plain JSON types: timestamps ISO 8601 in UTC, dates ISO, bytes never raw."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("bytes have no JSON form; the command says how to show them")
    return value


def _day_flag(text: str, flag: str) -> dt.date:
    """A ``--from``/``--to`` day (``YYYY-MM-DD``, UTC), or the usage error naming ``flag``."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} must be a day, YYYY-MM-DD; got {text!r}") from None


def day_range(first: str, last: str) -> tuple[dt.date, dt.date]:
    """``--from`` and ``--to`` as days, the second not before the first."""
    start, end = _day_flag(first, "--from"), _day_flag(last, "--to")
    if end < start:
        raise UsageError(f"--to {end} is before --from {start}")
    return start, end


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (and newlines) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def print_json(document: object, stream: IO[str] | None = None) -> None:
    """One JSON document on stdout, or ``stream`` (keys sorted, so the output is stable)."""
    out = sys.stdout if stream is None else stream
    json.dump(json_ready(document), out, indent=2, sort_keys=True, allow_nan=False)
    out.write("\n")


def short(value: object, width: int = 48) -> str:
    """``value`` as one table cell of at most ``width`` characters."""
    text = "-" if value is None else value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"
