"""``mediation tier``: move aged day partitions to cold storage, verified, then drop them.

For every partitioned table and every day older than its hot retention
(``mediation.rules.tiering``), in this order, each step safe to repeat:

1. **export** the partition to Parquet with its manifest last
   (``storage/tiering.py``), unless a manifest is already there and
   verifies: a re-run after a crash never exports a day twice;
2. **verify**: read the objects back, compare rows and checksum with the
   manifest, and the row count with Postgres;
3. **record** the day in ``tiering_catalog`` (location, rows, checksum);
4. **drop**: lock the partition, count its rows once more (a write since
   the export fails the step, and the next run exports again), detach and
   drop it and mark the catalog row dropped, in one transaction.

A crash between any two steps leaves a state the next run finishes:
objects without a catalog row are verified (or exported again) and
recorded; a recorded day still in Postgres is verified again and dropped.
``MEDIATION_TIER_CRASH_AFTER=exported|verified|recorded`` (drills only;
``Settings.tier_crash_after``, armed by ``arm_crash_drill``) SIGKILLs the
job right after that step of its first day.

Rows that arrive for a day after it was tiered (very late events: the
gateway accepts keys older than the hot retention) land in a partition the
sink creates again. For such a day (the catalog says dropped, yet a
partition exists) the job first **merges** its cold copy back into the
partition (one transaction; a row in both keeps the cold copy's values, as
replay reads them), then tiers the day as above: the new export replaces
the old objects, and the catalog gets its new rows and checksum. A crash
in between leaves the rows in both tiers, which replay reads once; the
next run merges again (idempotent) and finishes. The sink creates a day's
partitions of every table at once, so most tables of such a day come back
empty: an empty one is only dropped again, its cold copy kept as it is.

Days exported in cold layout 1 (``storage/tiering.py``) are rewritten in
layout 2 by ``rewrite_legacy_day``, verified; the catalog gets the new
checksum, and only then does the layout-1 manifest go (it marks the day as
still to rewrite, so a stop in between is finished by the next run).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psycopg
import pyarrow as pa
from psycopg import sql

from mediation.rules.tiering import DEFAULT_HOT_DAYS, days_to_tier
from mediation.settings import TIER_CRASH_POINTS

from .cold import ColdStore
from .partitions import PARTITION_DDL_LOCK, PARTITIONED_TABLES, partition_name
from .tiering import (
    SCHEMA_VERSION,
    TieringError,
    day_prefix,
    export_day,
    file_schema,
    legacy_manifest_key,
    partition_rows,
    primary_key,
    read_batches,
    read_manifest,
    rewrite_legacy_day,
    verify_day,
)

__all__ = [
    "CRASH_POINTS",
    "TierResult",
    "arm_crash_drill",
    "partition_days",
    "run_tiering",
    "tier_day",
]

log = logging.getLogger(__name__)

CRASH_POINTS = TIER_CRASH_POINTS

# The step after which this process kills itself (drills only); None: off.
# Cleared when it fires: the drill fires once per process.
_crash_after: str | None = None


@dataclass(frozen=True)
class TierResult:
    table: str
    day: dt.date
    rows: int | None
    # tiered | would tier | tiered (merged with its cold copy) | would merge ... |
    # dropped again (empty; ...) | would drop again ... | rewritten to cold layout N |
    # would rewrite ... | failed: ... | back in Postgres ...
    action: str


def partition_days(conn: psycopg.Connection, table: str) -> list[dt.date]:
    """The days ``table`` has a partition for (named ``<table>_YYYYMMDD``)."""
    names = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
        (table,),
    ).fetchall()
    days = []
    for (name,) in names:
        suffix = str(name)[len(table) + 1 :]
        try:
            days.append(dt.datetime.strptime(suffix, "%Y%m%d").date())
        except ValueError:
            log.warning("partition %s of %s is not named by day; left alone", name, table)
    return sorted(days)


def _catalog(conn: psycopg.Connection, table: str, day: dt.date) -> tuple[object, ...] | None:
    return conn.execute(
        "SELECT rows, checksum, dropped_at, deleted_at FROM tiering_catalog "
        "WHERE table_name = %s AND day = %s",
        (table, day),
    ).fetchone()


def arm_crash_drill(step: str | None) -> None:
    """Drills only: SIGKILL this process right after ``step`` (``Settings.tier_crash_after``)."""
    global _crash_after
    if step is not None and step not in CRASH_POINTS:
        raise ValueError(f"crash drill: expected one of {', '.join(CRASH_POINTS)}, got {step!r}")
    _crash_after = step


def _crash_drill(step: str) -> None:
    global _crash_after
    if _crash_after == step:
        _crash_after = None  # once
        os.kill(os.getpid(), signal.SIGKILL)


def tier_day(conn: psycopg.Connection, store: ColdStore, table: str, day: dt.date) -> int:
    """Export, verify, record and drop one day of one table (the four steps); its rows."""
    entry = _catalog(conn, table, day)
    manifest = None
    if read_manifest(store, table, day) is not None:
        try:
            manifest = verify_day(conn, store, table, day)
        except TieringError as exc:
            log.warning("%s %s: cold copy does not verify (%s); exporting again", table, day, exc)
    if manifest is None:
        export_day(conn, store, table, day)
        _crash_drill("exported")
        manifest = verify_day(conn, store, table, day)
    _crash_drill("verified")
    if entry is None or entry[:2] != (manifest.rows, manifest.checksum):
        conn.execute(
            "INSERT INTO tiering_catalog (table_name, day, location, rows, checksum, exported_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (table_name, day) DO UPDATE SET "
            "location = excluded.location, rows = excluded.rows, checksum = excluded.checksum, "
            "exported_at = excluded.exported_at, dropped_at = NULL",
            (
                table,
                day,
                store.location(day_prefix(table, day)),
                manifest.rows,
                manifest.checksum,
                dt.datetime.fromisoformat(manifest.exported_at),
            ),
        )
    _crash_drill("recorded")
    _drop(conn, table, day, manifest.rows)
    return manifest.rows


def _drop(conn: psycopg.Connection, table: str, day: dt.date, rows: int) -> None:
    """Step 4: drop the day's partition if it still holds ``rows`` rows; the catalog says so."""
    with conn.transaction():
        # The sink creates partitions under this lock: no race with it.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_DDL_LOCK,))
        name = sql.Identifier(partition_name(table, day))
        # Rows written into the day since it was verified would be lost with
        # it: with writes locked out, count once more.
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(name))
        if partition_rows(conn, table, day) != rows:
            raise TieringError(
                f"{table} {day}: rows were written since the export; it is exported again "
                "on the next run"
            )
        conn.execute(
            sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(sql.Identifier(table), name)
        )
        conn.execute(sql.SQL("DROP TABLE {}").format(name))
        conn.execute(
            "UPDATE tiering_catalog SET dropped_at = now() WHERE table_name = %s AND day = %s",
            (table, day),
        )


def merge_cold_copy(conn: psycopg.Connection, store: ColdStore, table: str, day: dt.date) -> int:
    """Put a tiered day's cold rows back into its partition (created again by late rows).

    One transaction. A primary key in both tiers keeps the cold copy's row,
    which is the one replay reads (``replay/cold.py``). Safe to repeat.
    Returns the rows the cold copy holds.
    """
    manifest = read_manifest(store, table, day)
    if manifest is None:
        raise TieringError(f"{table} {day}: catalogued as tiered, but no manifest in {store.url}")
    schema = file_schema(conn, table)
    names = [*schema.names, "day"]
    key = primary_key(conn, table)
    stage = sql.Identifier(f"merge_{table}")
    partition = sql.Identifier(partition_name(table, day))
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = excluded.{0}").format(sql.Identifier(name))
        for name in names
        if name not in key
    )
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                stage, partition
            )
        )
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, columns)) as copy:
            for batch in read_batches(store, manifest, schema):
                values = [_python_values(column) for column in batch.columns]
                for row in zip(*values, strict=True):
                    copy.write_row((*row, day))
        cur.execute(
            sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) DO UPDATE SET {}"
            ).format(
                partition,
                columns,
                columns,
                stage,
                sql.SQL(", ").join(map(sql.Identifier, key)),
                updates,
            )
        )
    log.info("%s %s: %d rows of its cold copy merged back into Postgres", table, day, manifest.rows)
    return manifest.rows


def _python_values(column: pa.Array) -> list[object]:
    if isinstance(column, pa.ExtensionArray):  # JSON: its text, which Postgres parses
        column = column.storage
    values: list[object] = column.to_pylist()
    return values


def _drop_empty_again(
    conn: psycopg.Connection, table: str, day: dt.date, dry_run: bool
) -> TierResult:
    """Drop a tiered day's partition that was created again and holds nothing."""
    if dry_run:
        return TierResult(table, day, 0, "would drop again (empty; its cold copy is kept)")
    try:
        _drop(conn, table, day, 0)
    except (TieringError, psycopg.Error) as exc:  # a row arrived: merged on the next run
        log.error("%s %s: not dropped: %s", table, day, exc)
        return TierResult(table, day, None, f"failed: {exc}")
    return TierResult(table, day, 0, "dropped again (empty; its cold copy is kept)")


def _rewrite_legacy_days(
    conn: psycopg.Connection, store: ColdStore, tables: Iterable[str], dry_run: bool
) -> list[TierResult]:
    """Rewrite every tiered day still in cold layout 1 (see ``rewrite_legacy_day``)."""
    days = conn.execute(
        "SELECT table_name, day, rows FROM tiering_catalog WHERE table_name = ANY(%s) "
        "AND dropped_at IS NOT NULL AND deleted_at IS NULL ORDER BY table_name, day",
        (list(tables),),
    ).fetchall()
    results = []
    for table, day, rows in days:
        if not store.exists(legacy_manifest_key(table, day)):
            continue
        if dry_run:
            results.append(
                TierResult(table, day, rows, f"would rewrite to cold layout {SCHEMA_VERSION}")
            )
            continue
        try:
            manifest = rewrite_legacy_day(conn, store, table, day)
            conn.execute(
                "UPDATE tiering_catalog SET checksum = %s WHERE table_name = %s AND day = %s",
                (manifest.checksum, table, day),
            )
            # Last: until the catalog has the new checksum, the day is rewritten again.
            store.delete(legacy_manifest_key(table, day))
        except (TieringError, psycopg.Error) as exc:
            log.error("%s %s: not rewritten: %s", table, day, exc)
            results.append(TierResult(table, day, rows, f"failed: {exc}"))
            continue
        results.append(
            TierResult(table, day, manifest.rows, f"rewritten to cold layout {SCHEMA_VERSION}")
        )
    return results


def run_tiering(
    conn: psycopg.Connection,
    store: ColdStore,
    today: dt.date,
    *,
    tables: Iterable[str] = PARTITIONED_TABLES,
    hot_days: Mapping[str, int] | None = None,
    default_hot_days: int = DEFAULT_HOT_DAYS,
    dry_run: bool = False,
) -> list[TierResult]:
    """Tier every aged day of ``tables``; ``conn`` must be in autocommit mode."""
    tables = tuple(tables)
    results = []
    for table in tables:
        retention = (hot_days or {}).get(table, default_hot_days)
        for day in days_to_tier(partition_days(conn, table), today, retention):
            entry = _catalog(conn, table, day)
            # Dropped before, yet a partition exists again: rows arrived for
            # the day after it was tiered.
            came_back = entry is not None and entry[2] is not None
            rows_now = partition_rows(conn, table, day)
            if came_back and entry is not None and entry[3] is not None:
                # Its cold copy is gone (retention): nothing to merge with.
                results.append(
                    TierResult(
                        table,
                        day,
                        rows_now,
                        "back in Postgres after tiering (cold copy deleted by retention)",
                    )
                )
                continue
            if came_back and rows_now == 0:
                # Created again for another table's late rows (the sink makes
                # a day's partitions of every table): nothing came back here,
                # so the verified cold copy stays as it is.
                results.append(_drop_empty_again(conn, table, day, dry_run))
                continue
            if dry_run:
                verb = "would merge with its cold copy and tier" if came_back else "would tier"
                results.append(TierResult(table, day, rows_now, verb))
                continue
            try:
                if came_back:
                    merge_cold_copy(conn, store, table, day)
                rows = tier_day(conn, store, table, day)
            except (TieringError, psycopg.Error) as exc:
                log.error("%s %s: not tiered: %s", table, day, exc)
                results.append(TierResult(table, day, None, f"failed: {exc}"))
                continue
            done = "tiered (merged with its cold copy)" if came_back else "tiered"
            results.append(TierResult(table, day, rows, done))
    return results + _rewrite_legacy_days(conn, store, tables, dry_run)
