"""Reading an opportunity's stored inputs back from hot Postgres.

Rows are turned back into the rules' records so that ``close_opportunity``
can recompute the closing record, exactly as the worker computed it.
First cut of replay: hot data only, ``recompute`` mode; cold Parquet and
the replay API come with the tiering work.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from mediation.clock import ms_of_datetime
from mediation.rules.closure import close_opportunity
from mediation.rules.model import ArchiveRecord, Event, Opportunity, WaterfallEntry
from mediation.rules.ulid import ulid_day

__all__ = ["StoredInputs", "load_archives", "load_inputs", "recompute"]


@dataclass(frozen=True, slots=True)
class StoredInputs:
    opportunity: Opportunity
    # Every stored event that was not late: what the worker had at close.
    events: tuple[Event, ...]
    late_events: tuple[Event, ...]


_OPP_SQL = """
SELECT o.opportunity_key, o.app_id, o.placement_id, o.device_hash, o.ts, o.client_ts,
       o.config_version, o.rollout_bucket, o.context, o.closure_window_ms, o.grace_ms,
       o.skew_tolerance_ms, d.delivery_id, d.status, d.waterfall, d.expires_at
FROM opportunity_records o
JOIN delivery_records d ON d.day = o.day AND d.opportunity_key = o.opportunity_key
WHERE o.day = ANY(%s) AND o.opportunity_key = ANY(%s)
"""
_EVENTS_SQL = """
SELECT opportunity_key, event_id, app_id, type, ts, server_ts, received_at, source_id,
       revenue_micros, currency, attrs, late
FROM event_records
WHERE day = ANY(%s) AND opportunity_key = ANY(%s)
"""


def _opportunity(row: tuple[Any, ...]) -> Opportunity:
    (
        key,
        app_id,
        placement_id,
        device_hash,
        ts,
        client_ts,
        config_version,
        bucket,
        context,
        window,
        grace,
        skew,
        delivery_id,
        status,
        waterfall,
        expires_at,
    ) = row
    return Opportunity(
        opportunity_key=key,
        app_id=app_id,
        placement_id=placement_id,
        device_hash=device_hash,
        ts_ms=ms_of_datetime(ts),
        client_ts_ms=ms_of_datetime(client_ts),
        config_version=config_version,
        rollout_bucket=bucket,
        context=context,
        delivery_id=delivery_id,
        status=status,
        waterfall=tuple(
            WaterfallEntry(e["source_id"], e["floor_micros"], e["timeout_ms"]) for e in waterfall
        ),
        expires_at_ms=ms_of_datetime(expires_at),
        closure_window_ms=window,
        grace_ms=grace,
        skew_tolerance_ms=skew,
    )


def load_inputs(conn: psycopg.Connection, keys: Iterable[str]) -> dict[str, StoredInputs]:
    keys = sorted(set(keys))
    days = sorted({ulid_day(key) for key in keys})
    opportunities = {
        row[0]: _opportunity(row) for row in conn.execute(_OPP_SQL, (days, keys)).fetchall()
    }
    events: dict[str, list[Event]] = defaultdict(list)
    late: dict[str, list[Event]] = defaultdict(list)
    for row in conn.execute(_EVENTS_SQL, (days, keys)).fetchall():
        (
            key,
            event_id,
            app_id,
            type_,
            ts,
            server_ts,
            received_at,
            source_id,
            revenue,
            currency,
            attrs,
            is_late,
        ) = row
        event = Event(
            event_id=event_id,
            app_id=app_id,
            opportunity_key=key,
            type=type_,
            ts_ms=ms_of_datetime(ts),
            server_ts_ms=ms_of_datetime(server_ts),
            received_at_ms=ms_of_datetime(received_at),
            source_id=source_id,
            revenue_micros=revenue,
            currency=currency.strip() if currency else None,
            attrs=attrs,
        )
        (late if is_late else events)[key].append(event)
    return {
        key: StoredInputs(opp, tuple(events.get(key, ())), tuple(late.get(key, ())))
        for key, opp in opportunities.items()
    }


_ARCHIVE_SQL = """
SELECT opportunity_key, app_id, placement_id, opened_at, closed_at, close_reason, outcome,
       rewarded, credited_source_id, revenue_micros, currency, counts, counted_events,
       excluded_events, config_version, rule_version, inputs_hash
FROM archive_records WHERE day = ANY(%s) AND opportunity_key = ANY(%s)
"""


def load_archives(conn: psycopg.Connection, keys: Iterable[str]) -> dict[str, ArchiveRecord]:
    keys = sorted(set(keys))
    days = sorted({ulid_day(key) for key in keys})
    result = {}
    for row in conn.execute(_ARCHIVE_SQL, (days, keys)).fetchall():
        (
            key,
            app_id,
            placement_id,
            opened_at,
            closed_at,
            close_reason,
            outcome,
            rewarded,
            credited,
            revenue,
            currency,
            counts,
            counted,
            excluded,
            config_version,
            rule_version,
            inputs_hash,
        ) = row
        result[key] = ArchiveRecord(
            opportunity_key=key,
            app_id=app_id,
            placement_id=placement_id,
            opened_at_ms=ms_of_datetime(opened_at),
            closed_at_ms=ms_of_datetime(closed_at),
            close_reason=close_reason,
            outcome=outcome,
            rewarded=rewarded,
            credited_source_id=credited,
            revenue_micros=revenue,
            currency=currency.strip() if currency else None,
            counts=counts,
            counted_events=counted,
            excluded_events=excluded,
            config_version=config_version,
            rule_version=rule_version,
            inputs_hash=inputs_hash,
        )
    return result


def recompute(inputs: StoredInputs, include_late: bool = False) -> ArchiveRecord:
    """The closing record the rules give for the stored inputs."""
    events = inputs.events + (inputs.late_events if include_late else ())
    return close_opportunity(inputs.opportunity, events).archive
