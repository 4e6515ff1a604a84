"""Which days move between the seed's tiers (pure; ``storage/tier_job.py`` and
``storage/lifecycle.py`` do the moving).

- **hot**: Postgres. A table's day is tiered (exported to Parquet, then
  dropped) once it is older than the table's hot retention: with 30 days,
  on 2026-11-25 every day before 2026-10-26; with 0 days, every day before
  today. Today (still being written) and later days are never tiered.
  ``--older-than DAYS`` is a hot retention of DAYS for every table;
  ``--older-than YYYY-MM-DD`` tiers the days strictly before that date.
- **warm**: Parquet in the standard storage class, until ``warm_days``
  (180) after the day.
- **cold**: the same objects in an infrequent-access storage class, kept
  until ``retain_days`` (365) after the day, then deleted (with an audit
  record).

Days are UTC days, the partition key of every record table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from .records import record

__all__ = [
    "DEFAULT_HOT_DAYS",
    "DEFAULT_RETAIN_DAYS",
    "DEFAULT_WARM_DAYS",
    "CatalogDay",
    "check_retention",
    "days_to_tier",
    "lifecycle_action",
    "older_than_days",
    "parse_hot_days",
]

DEFAULT_HOT_DAYS = 30
DEFAULT_WARM_DAYS = 180
DEFAULT_RETAIN_DAYS = 365


@record
class CatalogDay:
    """A tiered day as ``tiering_catalog`` knows it."""

    table: str
    day: dt.date
    dropped: bool
    moved: bool
    deleted: bool


def check_retention(hot_days: int, warm_days: int, retain_days: int) -> None:
    """The tiers must follow each other: hot < warm <= retain."""
    if not 0 <= hot_days < warm_days <= retain_days:
        raise ValueError(
            "retention must be 0 <= hot days < warm days <= retain days, got "
            f"{hot_days} / {warm_days} / {retain_days}"
        )


def lifecycle_action(
    entry: CatalogDay, today: dt.date, warm_days: int, retain_days: int
) -> str | None:
    """``"delete"``, ``"move"`` (warm to cold) or ``None`` for a catalogued day.

    Only days already dropped from Postgres age further; a deleted day is
    looked at again only to finish a deletion a crash interrupted (the
    caller checks its objects).
    """
    if not entry.dropped:
        return None
    if entry.day < today - dt.timedelta(days=retain_days):
        return "delete"
    if not entry.moved and not entry.deleted and entry.day < today - dt.timedelta(days=warm_days):
        return "move"
    return None


def days_to_tier(days: Iterable[dt.date], today: dt.date, hot_days: int) -> list[dt.date]:
    """The days older than ``hot_days`` before ``today``, oldest first (never today)."""
    if hot_days < 0:
        raise ValueError(f"hot retention must be >= 0 days, got {hot_days}")
    first_hot = today - dt.timedelta(days=hot_days)
    return sorted(day for day in set(days) if day < first_hot)


def _iso_date(text: str) -> dt.date | None:
    # Only YYYY-MM-DD: fromisoformat alone also takes 20261101 and 2026-W48-1.
    if len(text) != 10 or not text[4] == text[7] == "-":
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def older_than_days(text: str, today: dt.date) -> int:
    """The hot retention ``--older-than DAYS|DATE`` means on ``today``.

    ``DAYS`` (an integer >= 0): the days before ``today - DAYS`` are tiered.
    ``DATE`` (``YYYY-MM-DD``, not after ``today``): the days strictly before
    it, which is a retention of ``today - DATE`` days.
    """
    if text.isascii() and text.isdigit():
        return int(text)
    cutoff = _iso_date(text)
    if cutoff is None:
        raise ValueError(
            f"--older-than: expected DAYS (an integer >= 0) or a date YYYY-MM-DD, got {text!r}"
        )
    if cutoff > today:
        raise ValueError(
            f"--older-than: {cutoff} is after today ({today}): today's partition is still written"
        )
    return (today - cutoff).days


def parse_hot_days(overrides: Iterable[str], tables: Iterable[str]) -> Mapping[str, int]:
    """``TABLE=DAYS`` overrides, checked against the known tables."""
    known = set(tables)
    parsed: dict[str, int] = {}
    for text in overrides:
        table, sep, days = text.partition("=")
        if not sep or table not in known or not (days.isascii() and days.isdigit()):
            raise ValueError(
                f"expected TABLE=DAYS with one of {', '.join(sorted(known))} and DAYS >= 0, "
                f"got {text!r}"
            )
        parsed[table] = int(days)
    return parsed
