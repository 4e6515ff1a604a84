"""Stored rows back into the rules' records, whichever tier they come from.

Rows are mappings of column name to value, as psycopg's ``dict_row`` gives
them from Postgres and Arrow's ``to_pylist`` from Parquet. The two differ
only where the storage types do: ``jsonb`` is a decoded value from
Postgres and JSON text from Parquet, and ``char(3)`` currencies may carry
padding. Everything else (timestamps as aware datetimes) is the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from mediation.clock import ms_of_datetime
from mediation.rules.model import ArchiveRecord, Event, Opportunity, WaterfallEntry

__all__ = ["StoredInputs", "archive_of", "event_of", "opportunity_of"]

Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StoredInputs:
    opportunity: Opportunity
    # Every stored event that was not late: what the worker had at close.
    events: tuple[Event, ...]
    late_events: tuple[Event, ...]


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _currency(value: str | None) -> str | None:
    return value.strip() if value else None


def opportunity_of(row: Row) -> Opportunity:
    """From an ``opportunity_records`` row joined with its ``delivery_records`` row."""
    return Opportunity(
        opportunity_key=row["opportunity_key"],
        app_id=row["app_id"],
        placement_id=row["placement_id"],
        device_hash=row["device_hash"],
        ts_ms=ms_of_datetime(row["ts"]),
        client_ts_ms=ms_of_datetime(row["client_ts"]),
        config_version=row["config_version"],
        rollout_bucket=row["rollout_bucket"],
        context=_json(row["context"]),
        delivery_id=row["delivery_id"],
        status=row["status"],
        waterfall=tuple(
            WaterfallEntry(e["source_id"], e["floor_micros"], e["timeout_ms"])
            for e in _json(row["waterfall"])
        ),
        expires_at_ms=ms_of_datetime(row["expires_at"]),
        closure_window_ms=row["closure_window_ms"],
        grace_ms=row["grace_ms"],
        skew_tolerance_ms=row["skew_tolerance_ms"],
    )


def event_of(row: Row) -> Event:
    return Event(
        event_id=row["event_id"],
        app_id=row["app_id"],
        opportunity_key=row["opportunity_key"],
        type=row["type"],
        ts_ms=ms_of_datetime(row["ts"]),
        server_ts_ms=ms_of_datetime(row["server_ts"]),
        received_at_ms=ms_of_datetime(row["received_at"]),
        source_id=row["source_id"],
        revenue_micros=row["revenue_micros"],
        currency=_currency(row["currency"]),
        attrs=_json(row["attrs"]),
    )


def archive_of(row: Row) -> ArchiveRecord:
    return ArchiveRecord(
        opportunity_key=row["opportunity_key"],
        app_id=row["app_id"],
        placement_id=row["placement_id"],
        opened_at_ms=ms_of_datetime(row["opened_at"]),
        closed_at_ms=ms_of_datetime(row["closed_at"]),
        close_reason=row["close_reason"],
        outcome=row["outcome"],
        rewarded=row["rewarded"],
        credited_source_id=row["credited_source_id"],
        revenue_micros=row["revenue_micros"],
        currency=_currency(row["currency"]),
        counts=_json(row["counts"]),
        counted_events=row["counted_events"],
        excluded_events=row["excluded_events"],
        config_version=row["config_version"],
        rule_version=row["rule_version"],
        inputs_hash=row["inputs_hash"],
    )
