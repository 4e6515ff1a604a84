from __future__ import annotations

import datetime as dt

import pytest

from mediation.rules.tiering import days_to_tier, parse_hot_days

TODAY = dt.date(2026, 11, 25)


def test_days_older_than_the_hot_retention_are_tiered_oldest_first() -> None:
    days = [TODAY - dt.timedelta(days=n) for n in (0, 29, 30, 31, 45, 31)]
    assert days_to_tier(days, TODAY, 30) == [dt.date(2026, 10, 11), dt.date(2026, 10, 25)]
    assert days_to_tier(days, TODAY, 1) == sorted({d for d in days if d < TODAY - dt.timedelta(1)})


def test_a_hot_retention_below_one_day_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 day"):
        days_to_tier([TODAY], TODAY, 0)


def test_per_table_overrides_are_checked() -> None:
    assert parse_hot_days(["event_records=7"], ["event_records"]) == {"event_records": 7}
    for bad in ("event_records", "nope=3", "event_records=0", "event_records=x"):
        with pytest.raises(ValueError, match="TABLE=DAYS"):
            parse_hot_days([bad], ["event_records"])
