"""``mediation report --chart FILE.png``: revenue per day by source, and fill rate per day.

Fill rate is drawn for all sources together: a request has no source
until one fills it (a no-fill is nobody's), so a fill rate "by source"
would be about 100% for every source. Revenue is drawn per source and
currency, never added across currencies. Needs matplotlib, the ``reports``
extra: importing this module without it stops with one line naming it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

from mediation.extras import missing_extra
from mediation.report import SUMS, Part

try:
    import matplotlib
except ImportError:
    raise missing_extra("the report's chart", "reports") from None

matplotlib.use("Agg")  # files only, no display
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

__all__ = ["draw"]


def draw(path: Path, first: dt.date, last: dt.date, parts: Iterable[Part]) -> None:
    """``parts``: rollup sums by (day, source_id) and currency."""
    revenue: dict[tuple[str, str], dict[dt.date, float]] = {}
    requests: dict[dt.date, int] = {}
    fills: dict[dt.date, int] = {}
    for (day, source), currency, values in parts:
        assert isinstance(day, dt.date)
        sums = dict(zip(SUMS, values, strict=True))
        requests[day] = requests.get(day, 0) + sums["requests"]
        fills[day] = fills.get(day, 0) + sums["fills"]
        if sums["revenue_micros"]:
            line = revenue.setdefault((str(source or "-"), (currency or "-").strip()), {})
            line[day] = line.get(day, 0.0) + sums["revenue_micros"] / 1_000_000
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for (source, currency), by_day in sorted(revenue.items()):
        top.plot(days, [by_day.get(day, 0.0) for day in days], marker="o", ms=3,
                 label=f"{source} ({currency})")  # fmt: skip
    top.set_ylabel("revenue per day (currency units)")
    top.set_title(f"Revenue by source, {first} .. {last}")
    if revenue:
        top.legend(fontsize="small", ncol=2)
    top.grid(alpha=0.3)
    rates = [fills.get(day, 0) / requests[day] * 100 if requests.get(day) else None
             for day in days]  # fmt: skip
    bottom.plot(days, [rate if rate is not None else float("nan") for rate in rates],
                marker="o", ms=3, color="tab:green")  # fmt: skip
    bottom.set_ylabel("fill rate (%)")
    bottom.set_ylim(0, 100)
    bottom.set_title("Fill rate, all sources")
    bottom.grid(alpha=0.3)
    every = max(1, len(days) // 10)
    bottom.xaxis.set_major_locator(mdates.DayLocator(interval=every))  # type: ignore[no-untyped-call]
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))  # type: ignore[no-untyped-call]
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
