"""A fixed set of opportunities and events written straight to Kafka, and its checks.

Shared by the worker fault tests (crash drills, Postgres outage): they
bypass the gateway so that the input, and therefore every expected archive
record, is known exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import psycopg
from builders import opportunity
from confluent_kafka import Producer
from psycopg import sql

from mediation.rules.closure import close_opportunity
from mediation.rules.model import ArchiveRecord, Event, Opportunity
from mediation.rules.ulid import encode_ulid
from mediation.settings import Settings
from mediation.topics import producer_config
from mediation.wire import encode_event, encode_opportunity
from storage.hot_records import load_archives

WINDOW_MS, GRACE_MS, LATENESS_MS = 1_500, 500, 500

# Worker environment for these windows (closing within a few seconds).
WORKER_ENV = {
    "MEDIATION_ALLOWED_LATENESS_MS": str(LATENESS_MS),
    "MEDIATION_DEFAULT_CLOSURE_WINDOW_MS": str(WINDOW_MS),
    "MEDIATION_DEFAULT_GRACE_MS": str(GRACE_MS),
}


@dataclass(frozen=True)
class Dataset:
    opportunities: list[Opportunity]
    events: list[Event]

    def expected_archives(self) -> dict[str, ArchiveRecord]:
        by_key: dict[str, list[Event]] = {}
        for event in self.events:
            by_key.setdefault(event.opportunity_key, []).append(event)
        return {
            opp.opportunity_key: close_opportunity(opp, by_key[opp.opportunity_key]).archive
            for opp in self.opportunities
        }


def dataset(now_ms: int, count: int, spread_ms: int, seed: int) -> Dataset:
    """``count`` opportunities ``spread_ms`` apart from ``now_ms``, 1-3 events each."""
    rng = random.Random(seed)
    opportunities, events = [], []
    for i in range(count):
        ts = now_ms + i * spread_ms
        key = encode_ulid(ts, rng.randbytes(10))
        opportunities.append(
            replace(
                opportunity(key, ts_ms=ts, client_ts_ms=ts, expires_at_ms=ts + 300_000),
                closure_window_ms=WINDOW_MS,
                grace_ms=GRACE_MS,
            )
        )
        events.append(_event(key, ts, 0, "loaded", 100))
        if i % 3:
            events.append(
                _event(key, ts, 1, "impression", 200, revenue_micros=1_000 + i, currency="USD")
            )
        if i % 3 == 2:
            events.append(_event(key, ts, 2, "click", 300))
    return Dataset(opportunities, events)


def _event(key: str, ts: int, n: int, kind: str, at: int, **extra: object) -> Event:
    return Event(
        event_id=f"{key}-{n}",
        app_id="app",
        opportunity_key=key,
        type=kind,
        ts_ms=ts + at,
        server_ts_ms=ts + at,
        received_at_ms=ts + at,
        source_id="net_a",
        **extra,  # type: ignore[arg-type]
    )


def produce(settings: Settings, data: Dataset) -> None:
    """Every opportunity, then its events; each first event is sent twice (a resend)."""
    producer = Producer(producer_config(settings.kafka_bootstrap_servers, {"acks": "all"}))
    by_key: dict[str, list[Event]] = {}
    for e in data.events:
        by_key.setdefault(e.opportunity_key, []).append(e)
    for opp in data.opportunities:
        key = opp.opportunity_key.encode()
        producer.produce(settings.topics.opportunities, encode_opportunity(opp), key)
        for e in by_key[opp.opportunity_key]:
            producer.produce(settings.topics.events, encode_event(e), key)
            if e.event_id.endswith("-0"):
                producer.produce(settings.topics.events, encode_event(e), key)
        producer.poll(0)
    assert producer.flush(15) == 0


def count_rows(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    assert row is not None
    return int(row[0])


def assert_stored_exactly(conn: psycopg.Connection, data: Dataset) -> None:
    """One row per opportunity and distinct event, no dead letters, archives = the rules."""
    count = len(data.opportunities)
    assert count_rows(conn, "archive_records") == count
    assert count_rows(conn, "opportunity_records") == count
    assert count_rows(conn, "delivery_records") == count
    assert count_rows(conn, "event_records") == len(data.events)
    assert count_rows(conn, "dead_letters") == 0
    expected = data.expected_archives()
    stored = load_archives(conn, expected)
    if stored != expected:
        # Say which, and whether their events came after the close (a worker
        # starved of CPU long enough for its watermark to pass them).
        differing = sorted(key for key in expected if stored.get(key) != expected[key])
        late = conn.execute(
            "SELECT opportunity_key, event_id FROM event_records WHERE late ORDER BY 1, 2"
        ).fetchall()
        first = differing[0]
        raise AssertionError(
            f"{len(differing)} archive(s) differ from the rules; late events: {late[:5]} "
            f"({len(late)}); first: {first}\nstored:   {stored.get(first)}\n"
            f"expected: {expected[first]}"
        )
