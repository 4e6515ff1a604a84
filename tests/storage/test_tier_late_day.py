"""A day that comes back to Postgres after tiering: very late rows, written and tiered again.

The gateway accepts event keys up to 35 days old and tiering drops days
older than 30, so a writer that created a day's partition may find it
dropped under it, and ``mediation tier`` meets days whose partition exists
again.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from builders import event
from tiering_data import DAY, fill_day

from mediation.rules.model import LateEvent, StoredEvent
from mediation.rules.replay import Selection
from replay import cold
from sinks.postgres import PostgresWriter
from storage import hot_records
from storage.cold import ColdStore
from storage.db import connect
from storage.partitions import PARTITIONED_TABLES
from storage.tier_job import partition_days, run_tiering
from storage.tiering import read_manifest

pytestmark = pytest.mark.integration

AFTER_RETENTION = DAY + dt.timedelta(days=31)


def _late(key: str, event_id: str) -> LateEvent:
    return LateEvent(StoredEvent(event(key, event_id, "impression", 120_000), late=True))


def _events(conn: psycopg.Connection, ids: list[str]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM event_records WHERE event_id = ANY(%s)", (ids,)
    ).fetchone()
    return int(row[0]) if row else 0


def test_a_writer_writes_into_a_day_that_was_tiered_after_it_created_the_partition(
    database_url: str, store: ColdStore
) -> None:
    keys = fill_day(database_url, 5)
    writer = PostgresWriter(database_url)
    try:
        writer.write([_late(keys[0], "before-tiering")])  # the writer knows DAY's partitions
        with connect(database_url, autocommit=True) as conn:
            assert [r.action for r in run_tiering(conn, store, AFTER_RETENTION)].count("tiered") > 0
            assert DAY not in partition_days(conn, "event_records")
        writer.write([_late(keys[0], "after-tiering")])  # the partition it knew is gone
    finally:
        writer.close()
    with connect(database_url, autocommit=True) as conn:
        assert _events(conn, ["after-tiering"]) == 1  # in a partition created again
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)


def test_tiering_a_day_that_came_back_merges_it_into_its_cold_copy(
    database_url: str, store: ColdStore
) -> None:
    keys = fill_day(database_url, 5)
    selection = Selection(keys=tuple(sorted(keys)))
    with connect(database_url, autocommit=True) as conn:
        run_tiering(conn, store, AFTER_RETENTION)
        events_before = read_manifest(store, "event_records", DAY)
        assert events_before is not None
    writer = PostgresWriter(database_url)
    writer.write([_late(keys[1], "very-late")])
    writer.close()
    with connect(database_url, autocommit=True) as conn:
        loaded = cold.load(conn, store, selection)  # both tiers, merged
        assert len(loaded.inputs[keys[1]].late_events) == 1

        results = run_tiering(conn, store, AFTER_RETENTION)
        merged = {(r.table, r.day): r for r in results}
        assert merged[("event_records", DAY)].action == "tiered (merged with its cold copy)"
        assert merged[("event_records", DAY)].rows == events_before.rows + 1
        assert DAY not in partition_days(conn, "event_records")  # dropped again
        after = read_manifest(store, "event_records", DAY)
        assert after is not None and after.rows == events_before.rows + 1
        catalog = conn.execute(
            "SELECT rows, checksum, dropped_at IS NOT NULL FROM tiering_catalog "
            "WHERE table_name = 'event_records' AND day = %s",
            (DAY,),
        ).fetchone()
        assert catalog == (after.rows, after.checksum, True)
        assert cold.load(conn, store, selection) == loaded  # nothing lost, nothing doubled
        assert not hot_records.load_inputs(conn, keys)
        # Nothing left to do on the next run.
        assert not [r for r in run_tiering(conn, store, AFTER_RETENTION) if r.day == DAY]


def test_a_day_that_came_back_in_one_table_leaves_the_other_tables_cold_copies_alone(
    database_url: str, store: ColdStore
) -> None:
    # The sink creates a day's partitions of every table for one late event:
    # the tables that got no row have nothing to merge, and their verified
    # cold copies are neither copied back into Postgres nor exported again.
    keys = fill_day(database_url, 5)
    with connect(database_url, autocommit=True) as conn:
        run_tiering(conn, store, AFTER_RETENTION)
        before = {table: read_manifest(store, table, DAY) for table in PARTITIONED_TABLES}
    writer = PostgresWriter(database_url)
    writer.write([_late(keys[1], "very-late")])
    writer.close()
    with connect(database_url, autocommit=True) as conn:
        assert DAY in partition_days(conn, "opportunity_records")  # created again, empty
        results = {r.table: r for r in run_tiering(conn, store, AFTER_RETENTION) if r.day == DAY}
        assert results["event_records"].action == "tiered (merged with its cold copy)"
        for table in PARTITIONED_TABLES:
            assert DAY not in partition_days(conn, table), table
            if table == "event_records":
                continue
            assert results[table].action == "dropped again (empty; its cold copy is kept)"
            assert results[table].rows == 0
            assert read_manifest(store, table, DAY) == before[table], table  # not exported again
        assert not [r for r in run_tiering(conn, store, AFTER_RETENTION) if r.day == DAY]


def test_a_came_back_day_whose_cold_copy_cannot_be_read_fails_alone(
    database_url: str, file_store: ColdStore
) -> None:
    keys = fill_day(database_url, 5)
    with connect(database_url, autocommit=True) as conn:
        run_tiering(conn, file_store, AFTER_RETENTION)
    writer = PostgresWriter(database_url)
    writer.write([_late(keys[1], "very-late")])
    writer.close()
    manifest = read_manifest(file_store, "event_records", DAY)
    assert manifest is not None
    file_store.put_bytes(manifest.files[0].key, b"not parquet")  # damaged
    with connect(database_url, autocommit=True) as conn:
        results = {r.table: r for r in run_tiering(conn, file_store, AFTER_RETENTION)}
        assert results["event_records"].action.startswith("failed: ")
        assert "cannot be read" in results["event_records"].action
        assert _events(conn, ["very-late"]) == 1  # kept in Postgres
        # The other tables of the day are still handled.
        assert DAY not in partition_days(conn, "opportunity_records")
