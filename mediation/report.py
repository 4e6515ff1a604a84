"""The business report's rules: its dimensions, its rows and how each figure is computed.

Pure: the sums come from the daily rollups (``storage/rollups.py`` says
what each counts of an archive record; ``storage/report_reads.py`` reads
them, hot and cold); this module groups them by the dimensions asked for
and derives the ratios. docs/reporting.md, "Metrics", is this module in
prose.

Revenue is never added across currencies. Counts belong to a group (its
dimensions); revenue to a group and a currency. A group whose revenue is
in one currency (or none) is one row; a group with revenue in several is
one row per currency, each repeating the group's counts, with its own
``revenue_micros`` and ``ecpm_micros`` (over the group's impressions).
Rows are ordered by their dimensions (an empty value last) and then the
currency: the same range and dimensions give the same rows byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import InputError
from .tables import ROLLUP_SUMS

__all__ = [
    "COUNTS",
    "DIMENSIONS",
    "FIELDS",
    "SUMS",
    "Part",
    "ReportError",
    "ReportRow",
    "parse_dimensions",
    "report_rows",
]


class ReportError(InputError):
    """A report asked for what it cannot be (an unknown dimension)."""

    code = "report_invalid"


# Name on the command line -> the rollups' column (and the report's field).
DIMENSIONS: dict[str, str] = {
    "day": "day",
    "app": "app_id",
    "placement": "placement_id",
    "source": "source_id",
    "country": "country",
    "os": "os",
}
# The rollups' sums, in report order: the counts, then the revenue (apart: per currency).
SUMS: tuple[str, ...] = ROLLUP_SUMS
COUNTS: tuple[str, ...] = SUMS[:-1]
# One part of a report: (dimension values, currency, the sums in SUMS order).
Part = tuple[tuple[object, ...], str | None, Sequence[int]]
# Every row's fields after its dimensions, in this order (docs/reporting.md).
FIELDS: tuple[str, ...] = (
    "currency",
    "requests",
    "fills",
    "fill_rate",
    "no_fills",
    "no_fill_share",
    "load_failures",
    "impressions",
    "clicks",
    "click_through_rate",
    "rewarded",
    "revenue_micros",
    "ecpm_micros",
)


def parse_dimensions(text: str) -> tuple[str, ...]:
    """``day,app,source`` -> the rollup columns, in the order given; no repeats."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in DIMENSIONS]
    if unknown:
        raise ReportError(
            f"unknown dimension {unknown[0]!r} in --by; known: {', '.join(DIMENSIONS)}"
        )
    if len(set(names)) != len(names):
        raise ReportError(f"--by names a dimension twice: {text!r}")
    return tuple(DIMENSIONS[name] for name in names)


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One row: its dimensions' values, the group's counts, one currency's revenue."""

    dimensions: tuple[object, ...]
    currency: str | None
    counts: tuple[int, ...]  # in COUNTS order
    revenue_micros: int

    def values(self) -> tuple[object, ...]:
        """The fields after the dimensions, in ``FIELDS`` order."""
        requests, fills, no_fills, load_failures, impressions, clicks, rewarded = self.counts
        return (
            self.currency,
            requests,
            fills,
            _ratio(fills, requests),
            no_fills,
            _ratio(no_fills, requests),
            load_failures,
            impressions,
            clicks,
            _ratio(clicks, impressions),
            rewarded,
            self.revenue_micros,
            _ecpm(self.revenue_micros, impressions),
        )

    def as_dict(self, by: Sequence[str]) -> dict[str, object]:
        return dict(zip((*by, *FIELDS), (*self.dimensions, *self.values()), strict=True))


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _ecpm(revenue_micros: int, impressions: int) -> int | None:
    """Revenue per thousand impressions, in micros, rounded half up (exact integers)."""
    if not impressions:
        return None
    return (revenue_micros * 2000 + impressions) // (2 * impressions)


def _group_order(dimensions: tuple[object, ...]) -> tuple[tuple[bool, object], ...]:
    """By each value in turn, an empty (null) value after every other."""
    return tuple([(True, "") if value is None else (False, value) for value in dimensions])


def report_rows(sums: Iterable[Part]) -> list[ReportRow]:
    """Report rows from rollup sums, each ``(dimensions, currency, values in SUMS order)``.

    ``sums`` may hold a group and currency more than once (parts read from
    different places): they are added. Currency text is stripped (``char(3)``).
    """
    groups: dict[tuple[object, ...], list[int]] = {}
    revenue: dict[tuple[object, ...], dict[str | None, int]] = {}
    for dimensions, currency, values in sums:
        code = currency.strip() if currency is not None else None
        counts = groups.get(dimensions)
        if counts is None:
            groups[dimensions] = [int(value) for value in values[:-1]]
            revenue[dimensions] = {code: int(values[-1])}
            continue
        for index, value in enumerate(values[:-1]):
            counts[index] += int(value)
        by_currency = revenue[dimensions]
        by_currency[code] = by_currency.get(code, 0) + int(values[-1])
    rows: list[ReportRow] = []
    for dimensions in sorted(groups, key=_group_order):
        group_counts = tuple(groups[dimensions])
        currencies = revenue[dimensions]
        if len(currencies) == 1:  # the usual case: one currency, or no revenue
            ((code, micros),) = currencies.items()
            rows.append(ReportRow(dimensions, code, group_counts, micros))
            continue
        shown: list[str | None] = [*sorted(code for code in currencies if code is not None)]
        # Revenue the SDK sent without a currency has a row of its own, and
        # a group with no revenue at all has one row without a currency.
        if currencies.get(None):
            shown.append(None)
        rows.extend(
            ReportRow(dimensions, code, group_counts, currencies.get(code, 0)) for code in shown
        )
    return rows
