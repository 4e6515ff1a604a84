"""The report's pure rules: grouping, currencies, ratios, eCPM, order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediation.report import COUNTS, FIELDS, SUMS, ReportError, parse_dimensions, report_rows


def _sums(revenue: int = 0, **counts: int) -> tuple[int, ...]:
    return (*(counts.get(name, 0) for name in COUNTS), revenue)


def test_dimensions_parse_in_the_order_given() -> None:
    assert parse_dimensions("source, day,app") == ("source_id", "day", "app_id")
    assert parse_dimensions("") == ()
    with pytest.raises(ReportError, match="unknown dimension 'currency'"):
        parse_dimensions("day,currency")


def test_currencies_are_never_added_and_counts_belong_to_the_group() -> None:
    rows = report_rows(
        [
            (("app",), "USD", _sums(3_000, requests=2, fills=2, impressions=2)),
            (("app",), "EUR", _sums(1_000, requests=1, fills=1, impressions=1)),
            (("app",), None, _sums(0, requests=5, no_fills=5)),
        ]
    )
    assert [(row.currency, row.revenue_micros) for row in rows] == [("EUR", 1_000), ("USD", 3_000)]
    assert {row.counts for row in rows} == {(8, 3, 5, 0, 3, 0, 0)}  # the group's, on both
    values = dict(zip(FIELDS, rows[1].values(), strict=True))
    assert values["fill_rate"] == 0.375 and values["no_fill_share"] == 0.625
    assert values["ecpm_micros"] == 1_000_000  # 3,000 micros over 3 impressions, per mille


def test_a_group_without_revenue_has_one_row_without_currency() -> None:
    (row,) = report_rows([(("app",), None, _sums(requests=1, no_fills=1))])
    values = dict(zip(FIELDS, row.values(), strict=True))
    assert values["currency"] is None and values["revenue_micros"] == 0
    assert values["ecpm_micros"] is None and values["click_through_rate"] is None


def test_ecpm_rounds_half_up_exactly() -> None:
    (row,) = report_rows([((), "USD", _sums(1, impressions=2000))])
    assert row.values()[-1] == 1  # 0.5 micros per mille rounds up
    (row,) = report_rows([((), "USD", _sums(1, impressions=2001))])
    assert row.values()[-1] == 0


def test_rows_are_ordered_by_dimensions_with_empty_values_last() -> None:
    parts = [((country,), None, _sums(requests=1)) for country in ("US", None, "DE", "BR")]
    assert [row.dimensions for row in report_rows(parts)] == [("BR",), ("DE",), ("US",), (None,)]


_part = st.tuples(
    st.tuples(st.sampled_from(["a", "b", None]), st.sampled_from(["x", None])),
    st.sampled_from(["USD", "EUR", "USD ", None]),
    st.tuples(*(st.integers(0, 1_000) for _name in SUMS)),
)


@given(st.lists(_part, max_size=30))
def test_parts_add_up_in_any_order(parts: list[tuple]) -> None:  # type: ignore[type-arg]
    rows = report_rows(parts)
    assert report_rows(list(reversed(parts))) == rows
    # Each group's counts once; each currency's revenue in full.
    groups = {row.dimensions: row.counts for row in rows}
    for index in range(len(COUNTS)):
        assert sum(counts[index] for counts in groups.values()) == sum(p[2][index] for p in parts)
    assert sum(row.revenue_micros for row in rows) == sum(p[2][-1] for p in parts)
