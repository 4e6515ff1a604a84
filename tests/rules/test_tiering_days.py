from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediation.rules.tiering import (
    CatalogDay,
    check_retention,
    days_to_tier,
    lifecycle_action,
    older_than_days,
    parse_hot_days,
)

TODAY = dt.date(2026, 11, 25)


def test_days_older_than_the_hot_retention_are_tiered_oldest_first() -> None:
    days = [TODAY - dt.timedelta(days=n) for n in (0, 29, 30, 31, 45, 31)]
    assert days_to_tier(days, TODAY, 30) == [dt.date(2026, 10, 11), dt.date(2026, 10, 25)]
    assert days_to_tier(days, TODAY, 1) == sorted({d for d in days if d < TODAY - dt.timedelta(1)})


def test_zero_hot_days_tiers_every_day_before_today_and_never_today() -> None:
    days = [TODAY + dt.timedelta(days=n) for n in (-3, -1, 0, 1, 2)]
    assert days_to_tier(days, TODAY, 0) == [TODAY - dt.timedelta(3), TODAY - dt.timedelta(1)]


def test_a_negative_hot_retention_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0 days"):
        days_to_tier([TODAY], TODAY, -1)


def test_older_than_takes_a_number_of_days_or_a_date() -> None:
    assert older_than_days("7", TODAY) == 7
    assert older_than_days("0", TODAY) == 0
    assert older_than_days("2026-11-01", TODAY) == 24  # days before 2026-11-01
    assert older_than_days(TODAY.isoformat(), TODAY) == 0  # every day before today
    assert days_to_tier([dt.date(2026, 10, 31), dt.date(2026, 11, 1)], TODAY, 24) == [
        dt.date(2026, 10, 31)
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("-1", "expected DAYS (an integer >= 0) or a date YYYY-MM-DD, got '-1'"),
        ("7d", "expected DAYS (an integer >= 0) or a date YYYY-MM-DD, got '7d'"),
        ("2026-13-01", "expected DAYS (an integer >= 0) or a date YYYY-MM-DD, got '2026-13-01'"),
        ("", "expected DAYS (an integer >= 0) or a date YYYY-MM-DD, got ''"),
        (
            "2026-11-26",
            "2026-11-26 is after today (2026-11-25): today's partition is still written",
        ),
    ],
)
def test_older_than_refuses_what_it_cannot_mean(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as error:
        older_than_days(text, TODAY)
    assert str(error.value) == f"--older-than: {problem}"


_days = st.lists(st.dates(dt.date(2020, 1, 1), dt.date(2030, 12, 31)), max_size=40)
_today = st.dates(dt.date(2021, 1, 1), dt.date(2029, 12, 31))


@given(_days, _today, st.integers(min_value=0, max_value=2000))
def test_older_than_days_tiers_exactly_the_days_before_today_minus_n(
    days: list[dt.date], today: dt.date, n: int
) -> None:
    tiered = days_to_tier(days, today, older_than_days(str(n), today))
    assert tiered == sorted({d for d in days if d < today - dt.timedelta(days=n)})
    assert all(d < today for d in tiered)  # today (still written) and later: never


@given(_days, _today, st.integers(min_value=0, max_value=2000))
def test_older_than_a_date_tiers_exactly_the_days_strictly_before_it(
    days: list[dt.date], today: dt.date, back: int
) -> None:
    cutoff = today - dt.timedelta(days=back)
    tiered = days_to_tier(days, today, older_than_days(cutoff.isoformat(), today))
    assert tiered == sorted({d for d in days if d < cutoff})


def test_per_table_overrides_are_checked() -> None:
    assert parse_hot_days(["event_records=7"], ["event_records"]) == {"event_records": 7}
    assert parse_hot_days(["event_records=0"], ["event_records"]) == {"event_records": 0}
    for bad in ("event_records", "nope=3", "event_records=-1", "event_records=x"):
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
    check_retention(0, 1, 1)  # hot 0: every day before today leaves Postgres
    for bad in ((-1, 180, 365), (30, 30, 365), (30, 180, 179)):
        with pytest.raises(ValueError, match="hot days < warm days <= retain days"):
            check_retention(*bad)
