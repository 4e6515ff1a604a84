"""One hour of the seed's traffic, generated: the replay and rules benchmarks' input.

180,000 opportunities an hour is the seed's rate (4.33M requests a day / 24),
about 1.8 events each: loads, impressions with revenue, closes and clicks.
The rules are imported when called, not at import: the rules benchmark sets
``MEDIATION_RULES_BUILD`` in child processes before they import them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mediation.rules.model import Event, Opportunity, WaterfallEntry

HOUR_START_MS = 1_768_478_400_000  # 2026-01-15 12:00 UTC
HOUR_MS = 3_600_000


def waterfall() -> tuple[WaterfallEntry, ...]:
    from mediation.rules.model import WaterfallEntry

    return tuple(WaterfallEntry(f"net_{n}", 100 * (6 - n), 1_500) for n in range(4))


def hour_of_traffic(
    opportunities: int, rng: random.Random
) -> Iterator[tuple[Opportunity, list[Event]]]:
    """Opportunities spread over the hour, each with its events (the seed's mix)."""
    from mediation.rules.model import Event, Opportunity
    from mediation.rules.ulid import encode_ulid

    sources = waterfall()
    for n in range(opportunities):
        ts = HOUR_START_MS + n * HOUR_MS // opportunities
        key = encode_ulid(ts, rng.randbytes(10))
        app = f"app{n % 20}"
        opportunity = Opportunity(
            opportunity_key=key, app_id=app, placement_id=f"pl{n % 5}", device_hash=f"d{n}",
            ts_ms=ts, client_ts_ms=ts - 40, config_version=3, rollout_bucket=n % 100,
            context={"country": "US", "os": "android"}, delivery_id=f"del{n}", status="fill",
            waterfall=sources, expires_at_ms=ts + 60_000, closure_window_ms=1_800_000,
            grace_ms=30_000, skew_tolerance_ms=300_000,
        )  # fmt: skip
        source = f"net_{n % 4}"
        events = []
        for offset, kind, share in ((900, "loaded", 0.85), (2_500, "impression", 0.6),
                                    (9_000, "closed", 0.3), (4_000, "click", 0.05)):  # fmt: skip
            if rng.random() < share:
                at = ts + offset + rng.randrange(500)
                impression = kind == "impression"
                events.append(
                    Event(
                        event_id=f"{key}-{kind}", app_id=app, opportunity_key=key, type=kind,
                        ts_ms=at - 30, server_ts_ms=at, received_at_ms=at + 200,
                        source_id=source, revenue_micros=1_250 if impression else None,
                        currency="USD" if impression else None,
                        attrs={"attempt": 1} if kind == "loaded" else {},
                    )
                )  # fmt: skip
        yield opportunity, events
