"""The report's reads: rollup sums of a range of days, hot and cold as one.

Per day, ``tiering_catalog`` says whether ``report_rollups`` left Postgres
for Parquet (``storage/tiered_days.py``). Hot days are summed by Postgres
in one ``GROUP BY``. A tiered day is read from its Parquet files (summed
by Arrow) plus the rows Postgres holds for it again (archives of very late
events land in a partition the sink creates again), merged on ``id`` as
replay merges (``replay/cold.py``): a row in both tiers (a day caught
between the tiering job's merge and its drop) counts once.

Days whose archive records have no rollups at all (archived before
rollups existed) are reported, not guessed at: ``mediation rollups
rebuild`` fills hot ones.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mediation.report import SUMS, Part
from mediation.tables import ARCHIVE_RECORDS, REPORT_ROLLUPS

from .cold import ColdStore
from .rollups import GROUP
from .tier_job import partition_days
from .tiered_days import TieredDays
from .tiering import TieringError, read_manifest

__all__ = ["RangeSums", "range_sums"]

_TABLES = (REPORT_ROLLUPS.name, ARCHIVE_RECORDS.name)


@dataclass
class RangeSums:
    """What a range's rollups hold, and which of its days they could not speak for."""

    parts: list[Part] = field(default_factory=list)
    hot_days: int = 0  # days with rollups in Postgres
    cold_days: list[dt.date] = field(default_factory=list)
    # Archive records without rollups (hot: rebuild them; cold: tiered before rollups existed).
    unrolled_hot: list[dt.date] = field(default_factory=list)
    unrolled_cold: list[dt.date] = field(default_factory=list)
    deleted: list[dt.date] = field(default_factory=list)  # retention deleted their cold copy


def _checked(by: Sequence[str]) -> tuple[str, ...]:
    allowed = {"day", *GROUP}
    for name in by:
        if name not in allowed or name == "currency":
            raise ValueError(f"not a report dimension: {name!r}")
    return tuple(by)


def _sums_sql() -> str:
    return ", ".join(f"sum({name})::int8 AS {name}" for name in SUMS)


def _hot(
    conn: psycopg.Connection,
    first: dt.date,
    last: dt.date,
    skip: list[dt.date],
    by: tuple[str, ...],
    apps: list[str] | None,
) -> Iterator[Part]:
    group = ", ".join((*by, "currency"))
    where = "day BETWEEN %s AND %s AND NOT (day = ANY(%s::date[]))"
    params: list[object] = [first, last, skip]
    if apps is not None:
        where += " AND app_id = ANY(%s)"
        params.append(apps)
    query = f"SELECT {group}, {_sums_sql()} FROM report_rollups WHERE {where} GROUP BY {group}"
    width = len(by)
    for row in conn.execute(query, params):
        yield tuple(row[:width]), row[width], row[width + 1 :]


def _cold_table(
    conn: psycopg.Connection, store: ColdStore, day: dt.date, apps: list[str] | None
) -> pa.Table:
    """The day's rollup rows: its Parquet files, and the rows Postgres holds again, once each."""
    manifest = read_manifest(store, REPORT_ROLLUPS.name, day)
    if manifest is None:
        raise TieringError(
            f"{REPORT_ROLLUPS.name} {day}: catalogued as tiered, but no manifest in {store.url}"
        )
    names = ["id", *GROUP, *SUMS]
    where = pc.field("app_id").isin(apps) if apps is not None else None
    tables = [
        pq.read_table(store.arrow_source(exported.key), columns=names, filters=where)
        for exported in manifest.files
    ]
    cold = pa.concat_tables(tables) if tables else None
    query = f"SELECT {', '.join(names)} FROM report_rollups WHERE day = %s"
    params: list[object] = [day]
    if apps is not None:
        query += " AND app_id = ANY(%s)"
        params.append(apps)
    hot = conn.execute(query, params).fetchall()
    if cold is None:
        return pa.Table.from_pylist([dict(zip(names, row, strict=True)) for row in hot])
    if hot:
        seen = set(cold.column("id").to_pylist())
        again = [dict(zip(names, row, strict=True)) for row in hot if row[0] not in seen]
        if again:
            cold = pa.concat_tables(
                [cold, pa.Table.from_pylist(again, schema=cold.schema)], promote_options="none"
            )
    return cold


def _cold(
    conn: psycopg.Connection,
    store: ColdStore,
    day: dt.date,
    by: tuple[str, ...],
    apps: list[str] | None,
) -> Iterator[Part]:
    table = _cold_table(conn, store, day, apps)
    if table.num_rows == 0:
        return
    keys = [name for name in (*by, "currency") if name != "day"]
    summed = table.group_by(keys, use_threads=False).aggregate([(name, "sum") for name in SUMS])
    for row in summed.to_pylist():
        values = [int(row[f"{name}_sum"] or 0) for name in SUMS]
        dimensions = tuple(day if name == "day" else row[name] for name in by)
        yield dimensions, row["currency"], values


def _hot_days(conn: psycopg.Connection, days: list[dt.date]) -> tuple[int, list[dt.date]]:
    """Of ``days`` (hot): how many have rollups, and those with archive records but none."""
    if not days:
        return 0, []
    rows = conn.execute(
        "SELECT d, EXISTS (SELECT 1 FROM report_rollups r WHERE r.day = d), "
        "EXISTS (SELECT 1 FROM archive_records a WHERE a.day = d) "
        "FROM unnest(%s::date[]) AS d ORDER BY d",
        (days,),
    ).fetchall()
    rolled = sum(1 for _day, has_rollups, _archived in rows if has_rollups)
    return rolled, [day for day, has_rollups, archived in rows if archived and not has_rollups]


def range_sums(
    conn: psycopg.Connection,
    store: ColdStore,
    first: dt.date,
    last: dt.date,
    by: Sequence[str],
    apps: Sequence[str] | None = None,
    progress: Callable[[dt.date, int, int], None] | None = None,
) -> RangeSums:
    """The rollup sums of the days ``first``..``last`` grouped by ``by`` (and currency).

    ``by`` names rollup columns (``day``, ``app_id``, ...); ``apps`` keeps
    those apps only. ``progress(day, done, of)`` is called per cold day.
    """
    dimensions = _checked(by)
    wanted = sorted(set(apps)) if apps is not None else None
    tiered = TieredDays.between(conn, first, last, tables=_TABLES)
    result = RangeSums()
    result.cold_days = sorted(day for table, day in tiered.dropped if table == REPORT_ROLLUPS.name)
    result.deleted = sorted({day for _table, day in tiered.deleted})
    result.parts.extend(_hot(conn, first, last, result.cold_days, dimensions, wanted))
    for done, day in enumerate(result.cold_days, 1):
        result.parts.extend(_cold(conn, store, day, dimensions, wanted))
        if progress is not None:
            progress(day, done, len(result.cold_days))
    partitioned = set(partition_days(conn, ARCHIVE_RECORDS.name))
    partitioned |= set(partition_days(conn, REPORT_ROLLUPS.name))
    hot_days = sorted(
        day for day in partitioned if first <= day <= last and day not in result.cold_days
    )
    result.hot_days, result.unrolled_hot = _hot_days(conn, hot_days)
    archived_cold = {day for table, day in tiered.dropped if table == ARCHIVE_RECORDS.name}
    maybe = sorted(archived_cold - set(result.cold_days))
    if maybe:
        rolled = conn.execute(
            "SELECT DISTINCT day FROM report_rollups WHERE day = ANY(%s::date[])", (maybe,)
        ).fetchall()
        result.unrolled_cold = sorted(set(maybe) - {row[0] for row in rolled})
    return result
