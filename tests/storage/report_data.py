"""Closed opportunities over several days, for the export and report tests."""

from __future__ import annotations

import datetime as dt
import os

from builders import T0, event, opportunity

from mediation.rules.closure import close_opportunity
from mediation.rules.model import LateEvent, StoredEvent
from mediation.rules.ulid import encode_ulid, ulid_day
from sinks.postgres import PostgresWriter

DAY_MS = 86_400_000


def write_items(database_url: str, items: list[object]) -> None:
    writer = PostgresWriter(database_url)
    writer.write(items)  # type: ignore[arg-type]
    writer.close()


def fill_days(
    database_url: str, days: int = 3, per_day: int = 4
) -> tuple[list[dt.date], list[list[object]]]:
    """``per_day`` closed opportunities a day, of two apps, with counted and uncounted events."""
    written: list[list[object]] = []
    filled = []
    for d in range(days):
        start = T0 + d * DAY_MS
        filled.append(ulid_day(encode_ulid(start, bytes(10))))
        items: list[object] = []
        written.append(items)
        for n in range(per_day):
            ts = start + n * 1000
            key = encode_ulid(ts, os.urandom(10))
            app, shift = ("app", "other")[n % 2], ts - T0
            events = [
                event(key, f"{key}-l", "loaded", shift + 10, app_id=app),
                event(key, f"{key}-i1", "impression", shift + 20, app_id=app),
                # Same time as i1: the event id orders them.
                event(
                    key,
                    f"{key}-i0",
                    "impression",
                    shift + 20,
                    app_id=app,
                    source_id="net_b",
                    revenue_micros=700 + n,
                    currency="EUR",
                ),
                # After the window closed: stored, excluded, never counted.
                event(key, f"{key}-out", "impression", shift + 60_000, app_id=app),
            ]
            if n == 3:
                events = events[:1]  # loaded, no impression
            context = {"country": ("US", "DE")[n % 2], "os": "ios"} if n != 1 else {}
            items.append(
                close_opportunity(
                    opportunity(
                        key,
                        ts_ms=ts,
                        app_id=app,
                        placement_id=f"p{n}",
                        context=context,
                        config_version=2 + n,
                        rollout_bucket=10 + n,
                    ),
                    events,
                )
            )
            if n == 0:  # arrived after the close: never counted
                late = event(key, f"{key}-late", "impression", shift + 90_000, app_id=app)
                items.append(LateEvent(StoredEvent(late, late=True)))
        write_items(database_url, items)
    return filled, written
