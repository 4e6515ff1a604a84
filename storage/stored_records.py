"""Stored rows back into the rules' records, whichever tier they come from.

Rows are mappings of column name to value (``mediation.tables``: a
table's ``read_columns``), as ``storage.hot_records.table_rows`` reads
them from Postgres and ``replay.cold.cold_rows`` from Parquet: both give
timestamps as epoch milliseconds and ``jsonb`` as JSON text. ``char(3)``
currencies may carry padding. ``inputs_from_rows`` joins an opportunity's
rows into what the rules close it from; the sink's amendment ledger and
replay both read them back this way.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from mediation.rules.model import ArchiveRecord, Event, Opportunity, WaterfallEntry
from mediation.tables import DELIVERY_RECORDS

__all__ = [
    "DELIVERY_COLUMNS",
    "StoredInputs",
    "archive_of",
    "event_of",
    "inputs_from_rows",
    "opportunity_of",
]

Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StoredInputs:
    opportunity: Opportunity
    # Every stored event that was not late: what the worker had at close.
    events: tuple[Event, ...]
    late_events: tuple[Event, ...]


_json = orjson.loads


# Waterfalls, contexts and attrs repeat across a range (one config, a few
# countries, mostly empty attrs): decoded once per distinct text and shared,
# read-only, as the worker shares them.
@functools.lru_cache(maxsize=4096)
def _waterfall(text: str) -> tuple[WaterfallEntry, ...]:
    return tuple(
        WaterfallEntry(e["source_id"], e["floor_micros"], e["timeout_ms"]) for e in _json(text)
    )


@functools.lru_cache(maxsize=4096)
def _small_json(text: str) -> Any:
    return _json(text)


def _currency(value: str | None) -> str | None:
    return value.strip() if value else None


# Columns stored under the record's field name, with the same value.
_OPPORTUNITY_AS_IS = (
    "opportunity_key", "app_id", "placement_id", "device_hash", "config_version",
    "rollout_bucket", "delivery_id", "status", "closure_window_ms", "grace_ms",
    "skew_tolerance_ms",
)  # fmt: skip
_EVENT_AS_IS = ("event_id", "app_id", "opportunity_key", "type", "source_id", "revenue_micros")
_ARCHIVE_AS_IS = (
    "opportunity_key", "app_id", "placement_id", "close_reason", "outcome", "rewarded",
    "credited_source_id", "revenue_micros", "counted_events", "excluded_events",
    "config_version", "rule_version", "inputs_hash",
)  # fmt: skip


def _as_is(row: Row, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: row[name] for name in names}


def opportunity_of(row: Row) -> Opportunity:
    """From an ``opportunity_records`` row joined with its ``delivery_records`` row."""
    return Opportunity(
        **_as_is(row, _OPPORTUNITY_AS_IS),
        ts_ms=row["ts"],
        client_ts_ms=row["client_ts"],
        context=_small_json(row["context"]),
        waterfall=_waterfall(row["waterfall"]),
        expires_at_ms=row["expires_at"],
    )


def event_of(row: Row) -> Event:
    return Event(
        **_as_is(row, _EVENT_AS_IS),
        ts_ms=row["ts"],
        server_ts_ms=row["server_ts"],
        received_at_ms=row["received_at"],
        currency=_currency(row["currency"]),
        attrs=_small_json(row["attrs"]),
    )


def archive_of(row: Row) -> ArchiveRecord:
    return ArchiveRecord(
        **_as_is(row, _ARCHIVE_AS_IS),
        opened_at_ms=row["opened_at"],
        closed_at_ms=row["closed_at"],
        currency=_currency(row["currency"]),
        counts=_json(row["counts"]),
    )


# What a delivery row adds to its opportunity's (the key joins them).
DELIVERY_COLUMNS = tuple(
    name for name in DELIVERY_RECORDS.read_columns if name not in DELIVERY_RECORDS.row_key
)


def inputs_from_rows(
    opportunities: Iterable[Mapping[str, Any]],
    deliveries: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
) -> dict[str, StoredInputs]:
    """Each opportunity (with its delivery) and its events, late ones apart, from rows of any tier.

    Events join their opportunity on (opportunity_key, app_id): an event of
    another app stored under the key (an orphan of its own app, written
    before the opportunity's archive) is never one of its inputs. An
    opportunity without its delivery row is left out, as the join in
    Postgres would.
    """
    delivery_of = {row["opportunity_key"]: row for row in deliveries}
    on_time: dict[tuple[str, str], list[Event]] = defaultdict(list)
    late: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for row in events:
        owner = (row["opportunity_key"], row["app_id"])
        (late if row["late"] else on_time)[owner].append(event_of(row))
    inputs = {}
    for row in opportunities:
        key = row["opportunity_key"]
        delivery = delivery_of.get(key)
        if delivery is None:
            continue
        joined = {**row, **{column: delivery[column] for column in DELIVERY_COLUMNS}}
        owner = (key, row["app_id"])
        inputs[key] = StoredInputs(
            opportunity_of(joined), tuple(on_time.get(owner, ())), tuple(late.get(owner, ()))
        )
    return inputs
