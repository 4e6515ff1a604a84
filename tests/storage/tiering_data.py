"""One day of records for the tiering tests, far in the past (so aged)."""

from __future__ import annotations

import os

from builders import T0, event, opportunity

from mediation.rules.closure import close_opportunity
from mediation.rules.ulid import encode_ulid, ulid_day
from sinks.postgres import PostgresWriter
from sinks.records import DeadLetterRecord

DAY = ulid_day(encode_ulid(T0, bytes(10)))


def fill_day(database_url: str, opportunities: int = 30) -> None:
    items: list[object] = []
    for n in range(opportunities):
        key = encode_ulid(T0 + n, os.urandom(10))
        events = [
            event(key, f"{key}-1", "loaded", 10, received_after=50),
            event(key, f"{key}-2", "click", 20, received_after=50, attrs={"k": "v\tw\n", "n": 1}),
        ]
        items.append(close_opportunity(opportunity(key), events))
    items.append(
        DeadLetterRecord(
            id="t:0:1",
            day=DAY,
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
