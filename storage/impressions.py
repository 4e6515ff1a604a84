"""The counted impressions of a day, from hot and cold storage as one (the revenue export).

A counted impression is an ``event_records`` row of type ``impression``
that the closing rules counted (``mediation/rules/closure.py``): no
``excluded_reason`` (not out of the window, not an orphan) and not ``late``
(events after the close never change the archive record). So an
opportunity's counted impressions are exactly those its archive record
counts: their number is ``counts['impression']`` and their
``revenue_micros`` add up to the archive's.

Hot and cold are read as replay reads them (``replay/cold.py``): per table
and day, ``tiering_catalog`` (``storage/tiered_days.py``) says whether the
day's Parquet is read; Postgres is read for every day, and rows are merged
on the table's primary key, the cold copy first, so a day split mid-tiering
counts each impression once. The Parquet reads are here rather than beside
replay's because they select other columns (``excluded_reason``, the
context) and the export is a tool, not the replay engine.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mediation.tables import record_table
from storage.cold import ColdStore
from storage.tier_job import partition_days
from storage.tiered_days import TieredDays
from storage.tiering import TieringError, read_manifest

__all__ = ["Impression", "day_impressions", "stored_days"]

_EVENT_COLUMNS = (
    "event_id",
    "app_id",
    "opportunity_key",
    "server_ts",
    "source_id",
    "revenue_micros",
    "currency",
)
_OPPORTUNITY_COLUMNS = (
    "opportunity_key",
    "app_id",
    "placement_id",
    "config_version",
    "rollout_bucket",
    "context",
)


@dataclass(frozen=True, slots=True)
class Impression:
    """One counted impression, with what its opportunity record says of it."""

    day: dt.date  # the opportunity's day (its partition)
    server_ts_ms: int
    opportunity_key: str
    event_id: str
    app_id: str
    placement_id: str
    source_id: str | None
    country: str | None
    os: str | None
    revenue_micros: int | None
    currency: str | None
    config_version: int
    rollout_bucket: int

    def order(self) -> tuple[dt.date, int, str, str]:
        return (self.day, self.server_ts_ms, self.opportunity_key, self.event_id)


def stored_days(
    conn: psycopg.Connection, tiered: TieredDays, first: dt.date, last: dt.date
) -> list[dt.date]:
    """The days from ``first`` to ``last`` that hold events, hot or cold (a range may span
    centuries; only these are read)."""
    cold = {day for table, day in tiered.dropped if table == "event_records"}
    return sorted(
        day for day in cold | set(partition_days(conn, "event_records")) if first <= day <= last
    )


def _hot_events(conn: psycopg.Connection, day: dt.date, app_id: str | None) -> list[dict[str, Any]]:
    query = (
        "SELECT event_id, app_id, opportunity_key, "
        "floor(extract(epoch FROM server_ts) * 1000)::int8 AS server_ts, "
        "source_id, revenue_micros, currency FROM event_records "
        "WHERE day = %s AND type = 'impression' AND excluded_reason IS NULL AND NOT late"
    )
    params: tuple[object, ...] = (day,)
    if app_id is not None:
        query += " AND app_id = %s"
        params = (day, app_id)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        return cursor.execute(query, params).fetchall()


def _hot_opportunities(
    conn: psycopg.Connection, day: dt.date, keys: list[str]
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        return cursor.execute(
            "SELECT opportunity_key, app_id, placement_id, config_version, rollout_bucket, "
            "context::text AS context FROM opportunity_records "
            "WHERE day = %s AND opportunity_key = ANY(%s)",
            (day, keys),
        ).fetchall()


def _cold(
    store: ColdStore, table: str, day: dt.date, columns: tuple[str, ...], where: Any
) -> list[dict[str, Any]]:
    manifest = read_manifest(store, table, day)
    if manifest is None:
        raise TieringError(f"{table} {day}: catalogued as tiered, but no manifest in {store.url}")
    rows: list[dict[str, Any]] = []
    for exported in manifest.files:
        found = pq.read_table(
            store.arrow_source(exported.key), columns=list(columns), filters=where
        )
        if "server_ts" in columns:
            index = found.column_names.index("server_ts")
            as_ms = (
                found.column(index).cast(pa.timestamp("ms", tz="UTC"), safe=False).cast(pa.int64())
            )
            found = found.set_column(index, "server_ts", as_ms)
        if "context" in columns:
            index = found.column_names.index("context")
            found = found.set_column(index, "context", found.column(index).cast(pa.string()))
        rows.extend(found.to_pylist())
    return rows


def _merged(
    table: str, cold: list[dict[str, Any]], hot: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each primary key once, the cold copy first (as ``replay/cold.py`` merges)."""
    if not cold:
        return hot
    primary = record_table(table).row_key
    seen = {tuple(row[name] for name in primary) for row in cold}
    return cold + [row for row in hot if tuple(row[name] for name in primary) not in seen]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def day_impressions(
    conn: psycopg.Connection,
    store: ColdStore,
    tiered: TieredDays,
    day: dt.date,
    app_id: str | None = None,
) -> list[Impression]:
    """The counted impressions of opportunities of ``day``, in export order."""
    if ("event_records", day) in tiered.dropped:
        where = (
            (pc.field("type") == "impression")
            & pc.field("excluded_reason").is_null()
            & ~pc.field("late")
        )
        if app_id is not None:
            where &= pc.field("app_id") == app_id
        cold_events = _cold(store, "event_records", day, _EVENT_COLUMNS, where)
    else:
        cold_events = []
    events = _merged("event_records", cold_events, _hot_events(conn, day, app_id))
    if not events:
        return []
    keys = sorted({row["opportunity_key"] for row in events})
    if ("opportunity_records", day) in tiered.dropped:
        where = pc.field("opportunity_key").isin(keys)
        cold_opportunities = _cold(store, "opportunity_records", day, _OPPORTUNITY_COLUMNS, where)
    else:
        cold_opportunities = []
    opportunities = {
        row["opportunity_key"]: row
        for row in _merged(
            "opportunity_records", cold_opportunities, _hot_opportunities(conn, day, keys)
        )
    }
    impressions = []
    for event in events:
        opportunity = opportunities.get(event["opportunity_key"])
        # A counted event always has its opportunity, of its own app (the
        # ownership rule); anything else was never counted.
        if opportunity is None or opportunity["app_id"] != event["app_id"]:
            continue
        context = json.loads(opportunity["context"]) if opportunity["context"] else {}
        currency = event["currency"]
        impressions.append(
            Impression(
                day=day,
                server_ts_ms=int(event["server_ts"]),
                opportunity_key=event["opportunity_key"],
                event_id=event["event_id"],
                app_id=event["app_id"],
                placement_id=opportunity["placement_id"],
                source_id=event["source_id"],
                country=_text(context.get("country")),
                os=_text(context.get("os")),
                revenue_micros=event["revenue_micros"],
                # char(3) may come back padded
                currency=currency.strip() if currency is not None else None,
                config_version=int(opportunity["config_version"]),
                rollout_bucket=int(opportunity["rollout_bucket"]),
            )
        )
    impressions.sort(key=Impression.order)
    return impressions
