"""The writer's rows fit the columns ``mediation/tables.py`` declares, position for position."""

from __future__ import annotations

import datetime as dt

from builders import T0, event, opportunity

from mediation.rules.closure import close_opportunity
from mediation.rules.model import LateEvent, OrphanEvents, StoredEvent
from mediation.rules.ulid import encode_ulid
from mediation.tables import TABLES
from mediation.wire import DeadLetterRecord
from sinks.rows import COLUMNS, SINK_TABLES, rows_for

KEY = encode_ulid(T0, bytes(10))


def test_every_row_has_one_value_per_written_column() -> None:
    closed = close_opportunity(opportunity(KEY), [event(KEY, "e1", "impression", 10)])
    late = event(KEY, "e2", "click", 60_000)
    letter = DeadLetterRecord(
        "t:0:1", dt.date(2025, 10, 9), "invalid_json", "x", None, None, "t", 0, 1, b"{"
    )
    rows = rows_for(
        [
            closed,
            LateEvent(StoredEvent(late, late=True)),
            OrphanEvents(KEY, (StoredEvent(late, excluded_reason="unknown_opportunity"),)),
            letter,
        ]
    )
    assert tuple(rows.by_table) == SINK_TABLES
    for table, table_rows in rows.by_table.items():
        assert table_rows, table
        assert COLUMNS[table] == TABLES[table].written_columns
        assert {len(row) for row in table_rows} == {len(COLUMNS[table])}, table
    (event_row, *_) = rows.by_table["event_records"]
    named = dict(zip(COLUMNS["event_records"], event_row, strict=True))
    assert (named["event_id"], named["app_id"], named["opportunity_key"]) == ("e1", "app", KEY)
    assert named["late"] is False and named["excluded_reason"] is None
