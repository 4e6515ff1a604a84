"""One day of records for the tiering tests, far in the past (so aged)."""

from __future__ import annotations

import os

import psycopg
from builders import T0, event, opportunity

from mediation.rules.closure import close_opportunity
from mediation.rules.model import LateEvent, StoredEvent
from mediation.rules.ulid import encode_ulid, ulid_day
from mediation.wire import DeadLetterRecord
from sinks.postgres import PostgresWriter
from storage.configs import push_config

DAY = ulid_day(encode_ulid(T0, bytes(10)))


def fill_day(
    database_url: str,
    opportunities: int = 30,
    start_ms: int = T0,
    *,
    step_ms: int = 1,
    apps: tuple[str, ...] = ("app",),
    placements: tuple[str, ...] = ("p",),
) -> list[str]:
    """Closed opportunities (the first with a late event) and a dead letter; their keys.

    Opportunity ``n`` is at ``start_ms + n * step_ms``, of ``apps[n % len]``
    and ``placements[n % len]``.
    """
    day = ulid_day(encode_ulid(start_ms, bytes(10)))
    items: list[object] = []
    keys = []
    for n in range(opportunities):
        ts_ms = start_ms + n * step_ms
        key = encode_ulid(ts_ms, os.urandom(10))
        keys.append(key)
        app = apps[n % len(apps)]
        shift = ts_ms - T0  # the builders' times are relative to T0
        events = [
            event(key, f"{key}-1", "loaded", shift + 10, received_after=50, app_id=app),
            event(
                key,
                f"{key}-2",
                "click",
                shift + 20,
                received_after=50,
                app_id=app,
                attrs={"k": "v\tw\n", "n": 1},
            ),
        ]
        items.append(
            close_opportunity(
                opportunity(
                    key, ts_ms=ts_ms, app_id=app, placement_id=placements[n % len(placements)]
                ),
                events,
            )
        )
    late = event(keys[0], f"{keys[0]}-late", "impression", start_ms - T0 + 60_000,
                 received_after=50, app_id=apps[0])  # fmt: skip
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


def push_two_config_versions(conn: psycopg.Connection) -> None:
    """Apps ``a`` and ``b``, each with config version 1 (the one that ran) and version 2,
    whose 15 ms window closes before the clicks (events come 10 and 20 ms after their
    opportunity): a recompute under version 2 changes archives."""
    placements = {"p": {"waterfall": [{"source_id": "net_a", "floor_micros": 0,
                                       "timeout_ms": 5}]}}  # fmt: skip
    for app in ("a", "b"):
        conn.execute("INSERT INTO apps (app_id, name) VALUES (%s, %s)", (app, app))
        push_config(conn, app, {"placements": placements}, "test")
        push_config(conn, app, {"closure_window_ms": 15, "placements": placements}, "test")
