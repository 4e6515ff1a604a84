"""Which day partitions leave the hot tier (pure; ``storage/tier_job.py`` does the moving).

A table's day is tiered once it is older than the table's hot retention:
with 30 days, on 2026-11-25 every day before 2026-10-26 goes to cold
storage. Days are UTC days, the partition key of every record table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

__all__ = ["DEFAULT_HOT_DAYS", "days_to_tier", "parse_hot_days"]

DEFAULT_HOT_DAYS = 30


def days_to_tier(days: Iterable[dt.date], today: dt.date, hot_days: int) -> list[dt.date]:
    """The days older than ``hot_days`` before ``today``, oldest first."""
    if hot_days < 1:
        raise ValueError("hot retention must be at least 1 day")
    first_hot = today - dt.timedelta(days=hot_days)
    return sorted(day for day in set(days) if day < first_hot)


def parse_hot_days(overrides: Iterable[str], tables: Iterable[str]) -> Mapping[str, int]:
    """``TABLE=DAYS`` overrides, checked against the known tables."""
    known = set(tables)
    parsed: dict[str, int] = {}
    for text in overrides:
        table, sep, days = text.partition("=")
        if not sep or table not in known or not days.isdigit() or int(days) < 1:
            raise ValueError(
                f"expected TABLE=DAYS with one of {', '.join(sorted(known))} and DAYS >= 1, "
                f"got {text!r}"
            )
        parsed[table] = int(days)
    return parsed
