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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from mediation.rules.model import ArchiveRecord, Event, Opportunity, WaterfallEntry
from mediation.rules.records import mypyc_attr, record_state, set_record_state
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


@mypyc_attr(allow_interpreted_subclasses=True, acyclic=True)
@dataclass(frozen=True, slots=True)
class StoredInputs:
    """A native record (mediation/rules/records.py)."""

    opportunity: Opportunity
    # Every stored event that was not late: what the worker had at close.
    events: tuple[Event, ...]
    late_events: tuple[Event, ...]

    def __init__(
        self, opportunity: Opportunity, events: tuple[Event, ...], late_events: tuple[Event, ...]
    ) -> None:
        object.__setattr__(self, "opportunity", opportunity)
        object.__setattr__(self, "events", events)
        object.__setattr__(self, "late_events", late_events)

    def __getstate__(self) -> list[object]:
        return record_state(self)

    def __setstate__(self, state: Sequence[object]) -> None:
        set_record_state(self, state)


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


# The records are built positionally, in their fields' order (named
# arguments, or a dict of them, cost more per row; a range replay builds
# millions). tests/storage and tests/rules/test_compiled_equivalence.py
# compare what they give with the records that were stored.


def _opportunity(row: Row, delivery: Row) -> Opportunity:
    return Opportunity(
        row["opportunity_key"],
        row["app_id"],
        row["placement_id"],
        row["device_hash"],
        row["ts"],  # ts_ms
        row["client_ts"],  # client_ts_ms
        row["config_version"],
        row["rollout_bucket"],
        _small_json(row["context"]),  # context
        delivery["delivery_id"],
        delivery["status"],
        _waterfall(delivery["waterfall"]),
        delivery["expires_at"],  # expires_at_ms
        row["closure_window_ms"],
        row["grace_ms"],
        row["skew_tolerance_ms"],
    )


def opportunity_of(row: Row) -> Opportunity:
    """From an ``opportunity_records`` row joined with its ``delivery_records`` row."""
    return _opportunity(row, row)


def event_of(row: Row) -> Event:
    currency = row["currency"]
    return Event(
        row["event_id"],
        row["app_id"],
        row["opportunity_key"],
        row["type"],
        row["ts"],  # ts_ms
        row["server_ts"],  # server_ts_ms
        row["received_at"],  # received_at_ms
        row["source_id"],
        row["revenue_micros"],
        currency.strip() if currency else None,
        _small_json(row["attrs"]),  # attrs
    )


def archive_of(row: Row) -> ArchiveRecord:
    currency = row["currency"]
    return ArchiveRecord(
        row["opportunity_key"],
        row["app_id"],
        row["placement_id"],
        row["opened_at"],  # opened_at_ms
        row["closed_at"],  # closed_at_ms
        row["close_reason"],
        row["outcome"],
        row["rewarded"],
        row["credited_source_id"],
        row["revenue_micros"],
        currency.strip() if currency else None,
        _json(row["counts"]),  # counts
        row["counted_events"],
        row["excluded_events"],
        row["config_version"],
        row["rule_version"],
        row["inputs_hash"],
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
    on_time: dict[tuple[str, str], list[Event]] = {}
    late: dict[tuple[str, str], list[Event]] = {}
    for row in events:
        owner = (row["opportunity_key"], row["app_id"])
        held = late if row["late"] else on_time
        event = event_of(row)
        kept = held.get(owner)
        if kept is None:
            held[owner] = [event]
        else:
            kept.append(event)
    inputs: dict[str, StoredInputs] = {}
    for row in opportunities:
        key = row["opportunity_key"]
        delivery = delivery_of.get(key)
        if delivery is None:
            continue
        owner = (key, row["app_id"])
        on_time_events = on_time.get(owner)
        late_events = late.get(owner)
        inputs[key] = StoredInputs(
            _opportunity(row, delivery),
            tuple(on_time_events) if on_time_events else (),
            tuple(late_events) if late_events else (),
        )
    return inputs
