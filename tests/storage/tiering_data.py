"""One day of records for the tiering tests, far in the past (so aged)."""

from __future__ import annotations

import os

from builders import T0, event, opportunity

from mediation.rules.closure import close_opportunity
from mediation.rules.model import LateEvent, StoredEvent
from mediation.rules.ulid import encode_ulid, ulid_day
from sinks.postgres import PostgresWriter
from sinks.records import DeadLetterRecord

DAY = ulid_day(encode_ulid(T0, bytes(10)))


def fill_day(database_url: str, opportunities: int = 30, start_ms: int = T0) -> list[str]:
    """Closed opportunities (one with a late event) and a dead letter; their keys."""
    day = ulid_day(encode_ulid(start_ms, bytes(10)))
    items: list[object] = []
    keys = []
    for n in range(opportunities):
        key = encode_ulid(start_ms + n, os.urandom(10))
        keys.append(key)
        events = [
            event(key, f"{key}-1", "loaded", 10, received_after=50),
            event(key, f"{key}-2", "click", 20, received_after=50, attrs={"k": "v\tw\n", "n": 1}),
        ]
        items.append(close_opportunity(opportunity(key, ts_ms=start_ms + n), events))
    late = event(keys[0], f"{keys[0]}-late", "impression", 60_000, received_after=50)
    items.append(LateEvent(StoredEvent(late, late=True)))
    items.append(
        DeadLetterRecord(
            id="t:0:1",
            day=day,
            reason="invalid_json",
            detail="oops",
            app_id=None,
            opportunity_key=None,
            source_topic="t",
            source_partition=0,
            source_offset=1,
            payload=b"\x00\xff{oops",
        )
    )
    writer = PostgresWriter(database_url)
    writer.write(items)  # type: ignore[arg-type]
    writer.close()
    return keys
