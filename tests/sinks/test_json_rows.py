"""The record tables' rows go in as one JSON document a table: the stored rows are
exactly what the former executemany / COPY + staging path stored, and a value
Postgres refuses is still refused (never cast into something else).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

import psycopg
import pytest
from builders import T0, event, opportunity
from psycopg import sql

import sinks.postgres as writer_module
from mediation.rules.closure import close_opportunity
from mediation.rules.model import LateEvent, OrphanEvents, StoredEvent
from mediation.rules.ulid import encode_ulid
from mediation.tables import JSONB, TABLES, TIMESTAMPTZ
from mediation.wire import DeadLetterRecord
from sinks.postgres import PostgresWriter
from sinks.records import SinkItem
from sinks.rows import COLUMNS, SINK_TABLES, json_text, timestamp_text
from storage.db import connect

pytestmark = pytest.mark.integration

_AWKWARD = 'tab\t nl\n cr\r quote" backslash\\ \\N null-marker é 😀 \u2028 \x7f'


_EDGE_MS = (0, -1, -86_400_001, 999, 1_000, 253_402_300_799_999, 2**41 + 7)


def _as_text(table: str, row: tuple[object, ...]) -> tuple[object, ...]:
    kinds = [TABLES[table].column(name).type for name in COLUMNS[table]]
    return tuple(
        timestamp_text(v)  # type: ignore[arg-type]
        if kind == TIMESTAMPTZ
        else json_text(v)
        if kind == JSONB
        else v
        for kind, v in zip(kinds, row, strict=True)
    )


def _former_insert(
    cur: psycopg.Cursor[tuple[object, ...]], table: str, rows: list[tuple[object, ...]]
) -> int:
    """The writer's insert before rows went in as JSON (executemany, or COPY + staging).

    Its rows carried timestamps as the text Postgres reads (``timestamp_text``)
    and ``jsonb`` values as JSON text.
    """
    return writer_module.insert_rows(cur, table, [_as_text(table, row) for row in rows])


def _items(huge: bool) -> list[SinkItem]:
    """Every kind of sink item, with the values text formats get wrong most easily.

    ``huge``: one event's attrs hold an integer beyond 64 bits (orjson refuses
    it: that table's document is written by the json module).
    """
    items: list[SinkItem] = []
    attrs = {
        "beyond": 2**70 if huge else 2**63 - 1,
        "note": _AWKWARD,
        "big": 2**62,
        "negative": -(2**63),
        "ratio": 1.25,
        "nested": {"list": [1, None, True, "é"], "empty": {}},
    }
    for n in range(150):  # enough events to cross the COPY threshold
        key = encode_ulid(T0 + n, os.urandom(10))
        opp = opportunity(
            key,
            placement_id=f"p{n} {_AWKWARD}",
            context={"country": "DE", "note": _AWKWARD} if n % 2 else {},
            rollout_bucket=n % 100,
        )
        events = [
            event(key, f"{key}-0", "loaded", 10, attrs=attrs if n % 3 == 0 else {}),
            event(key, f"{key}-1", "impression", 20, revenue_micros=2**62 + n),
        ]
        if n % 5 == 0:
            events.append(event(key, f"{key}-2", "click", 30, source_id=None))
        if n < len(_EDGE_MS):  # device clocks: any millisecond Postgres can hold
            events.append(event(key, f"{key}-3", "reward", 40, ts_ms=_EDGE_MS[n]))
        items.append(close_opportunity(opp, events))
    late_key = encode_ulid(T0, os.urandom(10))
    late = event(late_key, "late-1", "click", 70_000, attrs={"why": _AWKWARD})
    items.append(LateEvent(StoredEvent(late, late=True)))
    orphan_key = encode_ulid(T0 + 5, os.urandom(10))
    orphan = event(orphan_key, "orphan-1", "impression", 5, currency=None, revenue_micros=None)
    items.append(
        OrphanEvents(orphan_key, (StoredEvent(orphan, excluded_reason="unknown_opportunity"),))
    )
    items.append(
        DeadLetterRecord(
            "t:0:1",
            dt.date(2025, 10, 9),
            "invalid_json",
            _AWKWARD,
            None,
            None,
            "t",
            0,
            1,
            b"\x00{\xff",
        )
    )
    return items


def _stored(database_url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every written column of every sink table, as Postgres' text, in key order."""
    stored = {}
    with connect(database_url) as conn:
        for name in SINK_TABLES:
            table = TABLES[name]
            query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{}::text").format(sql.Identifier(c)) for c in table.written_columns
                ),
                sql.Identifier(name),
                sql.SQL(", ").join(map(sql.Identifier, table.key)),
            )
            stored[name] = conn.execute(query).fetchall()
    return stored


def _clear(database_url: str) -> None:
    with connect(database_url) as conn:
        conn.execute(
            sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, SINK_TABLES)))
        )
        conn.commit()


@pytest.mark.parametrize(
    ("copy_threshold", "huge"),
    [(1, False), (writer_module.COPY_THRESHOLD, False), (10_000, False), (1, True)],
)
def test_rows_stored_from_json_are_the_rows_the_former_path_stored(
    database_url: str, monkeypatch: pytest.MonkeyPatch, copy_threshold: int, huge: bool
) -> None:
    items = _items(huge)
    with monkeypatch.context() as former:
        former.setattr(writer_module, "COPY_THRESHOLD", copy_threshold)
        former.setattr(writer_module, "_insert", _former_insert)
        old = PostgresWriter(database_url)
        old.write(items)
        old.close()
    expected = _stored(database_url)
    _clear(database_url)
    new = PostgresWriter(database_url)
    new.write(items)
    new.write(items)  # written again after a restart: nothing twice
    new.close()
    stored = _stored(database_url)
    assert {name: len(rows) for name, rows in stored.items()} == {
        "opportunity_records": 150,
        "delivery_records": 150,
        "event_records": 332 + len(_EDGE_MS),
        "archive_records": 150,
        "dead_letters": 1,
    }
    assert stored == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("currency", "USDX"),  # character(3): refused, never truncated
        ("revenue_micros", 2**63),  # beyond bigint (and beyond orjson)
        ("source_id", "a\x00b"),  # NUL in a text column
        ("attrs", {"k": "a\x00b"}),  # NUL in jsonb
    ],
)
def test_a_value_postgres_refuses_is_isolated_and_the_rest_is_written(
    database_url: str, field: str, value: object
) -> None:
    good_key = encode_ulid(T0, os.urandom(10))
    bad_key = encode_ulid(T0 + 1, os.urandom(10))
    good = close_opportunity(opportunity(good_key), [event(good_key, "ok", "impression", 5)])
    bad_event = dataclasses.replace(event(bad_key, "bad", "impression", 5), **{field: value})
    poison = LateEvent(StoredEvent(bad_event, late=True))
    writer = PostgresWriter(database_url)
    writer.write([good, poison])
    writer.close()
    with connect(database_url) as conn:
        events = conn.execute("SELECT event_id, currency FROM event_records").fetchall()
        letters = conn.execute("SELECT reason, opportunity_key FROM dead_letters").fetchall()
    assert events == [("ok", "USD")]
    assert letters == [("unwritable", bad_key)]
