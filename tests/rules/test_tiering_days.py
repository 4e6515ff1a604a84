from __future__ import annotations

import datetime as dt

import pytest

from mediation.rules.tiering import (
    CatalogDay,
    check_retention,
    days_to_tier,
    lifecycle_action,
    parse_hot_days,
)

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


def _entry(
    age_days: int, *, dropped: bool = True, moved: bool = False, deleted: bool = False
) -> CatalogDay:
    return CatalogDay("event_records", TODAY - dt.timedelta(days=age_days), dropped, moved, deleted)


def test_warm_days_move_to_cold_and_cold_days_are_deleted_after_retention() -> None:
    def action(age: int, **state: bool) -> str | None:
        return lifecycle_action(_entry(age, **state), TODAY, 180, 365)

    assert action(100) is None  # warm
    assert action(180) is None
    assert action(181) == "move"
    assert action(181, moved=True) is None
    assert action(365, moved=True) is None
    assert action(366, moved=True) == "delete"
    assert action(366) == "delete"  # never moved: deleted all the same
    assert action(400, deleted=True) == "delete"  # a crash may have left objects
    assert action(400, dropped=False) is None  # still in Postgres: tiering first


def test_the_tiers_must_follow_each_other() -> None:
    check_retention(30, 180, 365)
    check_retention(1, 2, 2)
    for bad in ((0, 180, 365), (30, 30, 365), (30, 180, 179)):
        with pytest.raises(ValueError, match="hot days < warm days <= retain days"):
            check_retention(*bad)
