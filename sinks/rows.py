"""Turning sink items into table rows (plain tuples in column order).

The writer sends each table's rows to Postgres as one JSON document
(``sinks/postgres.py``), so a row holds only what JSON carries as is, and
no value is formatted for Postgres in Python: timestamps are epoch
milliseconds (the statement turns them into ``timestamptz`` exactly),
days are ISO text (a batch shares a few: cached), ``jsonb`` columns hold
the value itself (a dict, the waterfall's dataclasses: orjson writes them
inside the document), everything else is the record's own value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from mediation.clock import datetime_of_ms
from mediation.rules.model import (
    ClosedOpportunity,
    Event,
    LateEvent,
    Opportunity,
    OrphanEvents,
    StoredEvent,
)
from mediation.rules.ulid import ulid_day
from mediation.tables import TABLES, TIMESTAMPTZ
from mediation.wire import DeadLetterRecord

from .records import SinkItem

__all__ = [
    "COLUMNS",
    "SINK_TABLES",
    "EventRowKey",
    "TableRows",
    "dead_letter_row",
    "event_conflict_row",
    "json_text",
    "json_value",
    "rows_for",
    "timestamp_text",
]

# The tables the sink writes, in the order it writes them (a fixed order keeps
# lock order stable across workers), each with its columns in row order
# (``mediation/tables.py``); the amendment ledger is written apart.
SINK_TABLES = (
    "opportunity_records",
    "delivery_records",
    "event_records",
    "archive_records",
    "dead_letters",
)
COLUMNS: dict[str, tuple[str, ...]] = {name: TABLES[name].written_columns for name in SINK_TABLES}


def json_text(value: object) -> str:
    """A JSON value as text: orjson, or the json module for what orjson refuses.

    orjson is several times faster than the json module; it refuses
    integers beyond 64 bits, which json still writes (and a dataclass,
    which orjson writes as an object of its fields, is one here too).
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, default=_fields)


def _fields(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json_object(value: Mapping[str, object]) -> dict[str, object]:
    """A ``jsonb`` object column's value: the mapping itself, as a dict for orjson."""
    return value if type(value) is dict else dict(value)


def json_value(value: object) -> object:
    """A ``jsonb`` value of a row built here, as the stored one reads back (to compare)."""
    return orjson.loads(json_text(value))


# Text of recent seconds and days: the rows of one batch share a few of each.
_SECOND_TEXT: dict[int, str] = {}
_DAY_TEXT: dict[dt.date, str] = {}
_CACHE_LIMIT = 100_000


def timestamp_text(ms: int) -> str:
    """A ``timestamptz`` value as Postgres reads it: ``2026-11-25 20:57:51.123+00``."""
    second, milli = divmod(ms, 1000)
    prefix = _SECOND_TEXT.get(second)
    if prefix is None:
        if len(_SECOND_TEXT) >= _CACHE_LIMIT:
            _SECOND_TEXT.clear()
        prefix = datetime_of_ms(second * 1000).strftime("%Y-%m-%d %H:%M:%S")
        _SECOND_TEXT[second] = prefix
    return f"{prefix}.{milli:03d}+00"


def _day_text(day: dt.date) -> str:
    text = _DAY_TEXT.get(day)
    if text is None:
        if len(_DAY_TEXT) >= _CACHE_LIMIT:
            _DAY_TEXT.clear()
        text = _DAY_TEXT[day] = day.isoformat()
    return text


EventRowKey = tuple[object, object, object]  # (day, event_id, app_id): event_records' key


@dataclass
class TableRows:
    by_table: dict[str, list[tuple[object, ...]]] = field(
        default_factory=lambda: {table: [] for table in COLUMNS}
    )
    days: set[dt.date] = field(default_factory=set)  # the day partitions the rows go to
    # The event of each orphan row: the sink settles orphans against the
    # archive (late, or another app's: a dead letter made from the event).
    orphans: dict[EventRowKey, Event] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.by_table.values())


def _opportunity_rows(opp: Opportunity, day: str, rows: TableRows) -> None:
    rows.by_table["opportunity_records"].append(
        (
            day,
            opp.opportunity_key,
            opp.app_id,
            opp.placement_id,
            opp.device_hash,
            opp.ts_ms,
            opp.client_ts_ms,
            opp.config_version,
            opp.rollout_bucket,
            _json_object(opp.context),
            opp.closure_window_ms,
            opp.grace_ms,
            opp.skew_tolerance_ms,
        )
    )
    rows.by_table["delivery_records"].append(
        (
            day,
            opp.opportunity_key,
            opp.delivery_id,
            opp.status,
            # orjson writes each WaterfallEntry (a dataclass) as
            # {source_id, floor_micros, timeout_ms}.
            opp.waterfall,
            opp.expires_at_ms,
        )
    )


def _event_row(stored: StoredEvent, day: str) -> tuple[object, ...]:
    e = stored.event
    return (
        day,
        e.event_id,
        e.app_id,
        e.opportunity_key,
        e.type,
        e.ts_ms,
        e.server_ts_ms,
        e.received_at_ms,
        e.source_id,
        e.revenue_micros,
        e.currency,
        _json_object(e.attrs),
        stored.late,
        stored.excluded_reason,
    )


def _key_day(opportunity_key: str, rows: TableRows) -> str:
    date = ulid_day(opportunity_key)
    rows.days.add(date)
    return _day_text(date)


def rows_for(items: Iterable[SinkItem]) -> TableRows:
    rows = TableRows()
    for item in items:
        if isinstance(item, ClosedOpportunity):
            # One day for all of it: the events and the archive share the key.
            date = ulid_day(item.opportunity.opportunity_key)
            rows.days.add(date)
            day = _day_text(date)
            _opportunity_rows(item.opportunity, day, rows)
            rows.by_table["event_records"].extend(_event_row(s, day) for s in item.events)
            a = item.archive
            rows.by_table["archive_records"].append(
                (
                    day,
                    a.opportunity_key,
                    a.app_id,
                    a.placement_id,
                    a.opened_at_ms,
                    a.closed_at_ms,
                    a.close_reason,
                    a.outcome,
                    a.rewarded,
                    a.credited_source_id,
                    a.revenue_micros,
                    a.currency,
                    _json_object(a.counts),
                    a.counted_events,
                    a.excluded_events,
                    a.config_version,
                    a.rule_version,
                    a.inputs_hash,
                )
            )
        elif isinstance(item, LateEvent):
            day = _key_day(item.stored.event.opportunity_key, rows)
            rows.by_table["event_records"].append(_event_row(item.stored, day))
        elif isinstance(item, OrphanEvents):
            day = _key_day(item.opportunity_key, rows)
            for stored in item.events:
                rows.by_table["event_records"].append(_event_row(stored, day))
                rows.orphans[(day, stored.event.event_id, stored.event.app_id)] = stored.event
        elif isinstance(item, DeadLetterRecord):
            rows.days.add(item.day)
            rows.by_table["dead_letters"].append(dead_letter_row(item))
        else:  # a programming error, not bad input: fail loudly
            raise TypeError(f"unexpected sink item {type(item).__name__}")
    return rows


def dead_letter_row(item: DeadLetterRecord) -> tuple[object, ...]:
    """A ``dead_letters`` row."""
    return (
        # text columns cannot hold NUL; the original bytes stay in payload
        item.day,
        item.id,
        item.reason,
        item.detail.replace("\x00", ""),
        item.app_id,
        item.opportunity_key,
        item.source_topic,
        item.source_partition,
        item.source_offset,
        item.payload,
    )


def event_conflict_row(row: tuple[object, ...], stored: tuple[object, ...]) -> tuple[object, ...]:
    """A ``dead_letters`` row for an event whose id is stored with other content."""
    names = COLUMNS["event_records"]
    payload = {name: _as_written(name, value) for name, value in zip(names, row, strict=True)}
    body = orjson.dumps(payload, default=str, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(body).hexdigest()[:32]
    return (
        row[0],
        f"conflict:{digest}",
        "duplicate_conflict",
        f"event_id {row[1]!r} is already stored for opportunity {stored[0]!r} with other "
        "content; event ids must be unique per app",
        row[2],
        row[3],
        None,
        None,
        None,
        body,
    )


_EVENT_TIMESTAMPS = TABLES["event_records"].names_of_type(TIMESTAMPTZ)


def _as_written(name: str, value: object) -> object:
    """An event row's value as a conflict letter's payload shows it (its id hashes this)."""
    if name == "attrs":
        return json_value(value)
    if name in _EVENT_TIMESTAMPS and isinstance(value, int):
        return timestamp_text(value)
    return value
