"""The writer's rows fit the columns ``mediation/tables.py`` declares, position for position."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import orjson
from builders import T0, event, opportunity

from mediation.rules.closure import close_opportunity
from mediation.rules.model import LateEvent, OrphanEvents, StoredEvent
from mediation.rules.ulid import encode_ulid
from mediation.tables import TABLES
from mediation.wire import DeadLetterRecord
from sinks.rows import COLUMNS, SINK_TABLES, event_conflict_row, rows_for, timestamp_text

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


def test_a_conflict_letter_is_the_one_rows_of_timestamp_text_made() -> None:
    # Its id hashes the event row as the former writer hashed it, when rows
    # carried timestamps as text and attrs as JSON text (here the json
    # module's, orjson refusing 2**70): resends keep landing once.
    attrs = {"b": [1, "é"], "a": 2**70}
    stored = event(KEY, "e1", "impression", 10, attrs=attrs)
    (row,) = rows_for([LateEvent(StoredEvent(stored, late=True))]).by_table["event_records"]
    former_row = dict(zip(COLUMNS["event_records"], row, strict=True))
    for name in ("ts", "server_ts", "received_at"):
        former_row[name] = timestamp_text(int(former_row[name]))  # type: ignore[call-overload]
    former_row["attrs"] = json.dumps(attrs)
    assert former_row["ts"] == "2025-10-09 08:53:20.010+00"
    # The former event_conflict_row: attrs parsed back, the rest as in the row.
    payload = {k: orjson.loads(v) if k == "attrs" else v for k, v in former_row.items()}  # type: ignore[arg-type]
    body = orjson.dumps(payload, default=str, option=orjson.OPT_SORT_KEYS)
    letter = event_conflict_row(row, ("other-key",))
    assert letter[9] == body
    assert letter[1] == f"conflict:{hashlib.sha256(body).hexdigest()[:32]}"
