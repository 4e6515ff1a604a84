"""``mediation tier`` end to end: aged days leave Postgres only verified, and a crash between
any two steps is finished by the next run with nothing lost and nothing exported twice."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import psycopg
import pytest
from tiering_data import DAY

from mediation.sim.processes import mediation_command
from storage.cold import FileColdStore
from storage.db import connect
from storage.partitions import PARTITIONED_TABLES
from storage.tier_job import CRASH_POINTS, partition_days, run_tiering
from storage.tiering import export_day, read_manifest, verify_day

pytestmark = pytest.mark.integration

TODAY = DAY + dt.timedelta(days=31)


def _state(database_url: str, store: FileColdStore) -> dict[str, tuple[object, ...]]:
    with connect(database_url, autocommit=True) as conn:
        state = {}
        for table in PARTITIONED_TABLES:
            catalog = conn.execute(
                "SELECT rows, checksum, dropped_at IS NOT NULL FROM tiering_catalog "
                "WHERE table_name = %s AND day = %s",
                (table, DAY),
            ).fetchone()
            manifest = read_manifest(store, table, DAY)
            state[table] = (
                DAY in partition_days(conn, table),
                catalog,
                manifest and (manifest.rows, manifest.checksum, manifest.exported_at),
            )
        return state


def _tier(database_url: str, cold: Path, crash_after: str | None = None) -> int:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "COLD_STORAGE_URL": cold.as_uri(),
    }
    env.pop("SUPABASE_DB_URL", None)
    if crash_after:
        env["MEDIATION_TIER_CRASH_AFTER"] = crash_after
    command = mediation_command("tier", "--today", TODAY.isoformat(), "--table", "event_records")
    done = subprocess.run(command, env=env, capture_output=True, timeout=120, check=False)
    return done.returncode


def test_aged_days_are_exported_verified_recorded_and_dropped(
    conn: psycopg.Connection, filled_database: str, file_store: FileColdStore
) -> None:
    store = file_store
    planned = run_tiering(conn, store, TODAY, dry_run=True)
    assert {(r.table, r.action) for r in planned} == {
        (table, "would tier") for table in PARTITIONED_TABLES
    }
    assert DAY in partition_days(conn, "event_records")  # a dry run changes nothing
    kept = run_tiering(conn, store, DAY + dt.timedelta(days=30))
    assert kept == []  # still within the 30 hot days

    results = run_tiering(conn, store, TODAY)
    assert {r.action for r in results} == {"tiered"}
    rows = {r.table: r.rows for r in results}
    assert rows["event_records"] == 61 and rows["archive_records"] == 30
    assert run_tiering(conn, store, TODAY) == []  # nothing left to do
    for table, (in_postgres, catalog, manifest) in _state(filled_database, store).items():
        assert not in_postgres, table
        assert catalog is not None and catalog[2] is True, table
        assert manifest is not None and catalog[:2] == manifest[:2], table


@pytest.mark.parametrize("crash_after", CRASH_POINTS)
def test_a_crash_between_steps_is_finished_by_the_next_run(
    filled_database: str, file_store: FileColdStore, crash_after: str
) -> None:
    database_url, store, cold = filled_database, file_store, file_store.root
    assert _tier(database_url, cold, crash_after) == -9  # SIGKILLed after that step
    crashed = _state(database_url, store)["event_records"]
    assert crashed[0] is True  # still in Postgres: nothing dropped before the end
    exported_at = crashed[2][2]  # type: ignore[index]

    assert _tier(database_url, cold) == 0
    in_postgres, catalog, manifest = _state(database_url, store)["event_records"]
    assert not in_postgres
    assert catalog is not None and catalog[2] is True and catalog[:2] == manifest[:2]  # type: ignore[index]
    assert manifest[2] == exported_at  # type: ignore[index]  # not exported a second time
    assert manifest[0] == 61  # type: ignore[index]


def test_a_cold_copy_that_does_not_verify_is_exported_again(
    conn: psycopg.Connection, file_store: FileColdStore
) -> None:
    store = file_store
    first = export_day(conn, store, "archive_records", DAY)
    (store.root / first.files[0].key).write_bytes(b"not parquet")  # damaged
    (result,) = run_tiering(conn, store, TODAY, tables=["archive_records"])
    assert result.action == "tiered"
    manifest = read_manifest(store, "archive_records", DAY)
    assert manifest is not None and manifest.exported_at != first.exported_at
    with pytest.raises(psycopg.errors.UndefinedTable):
        verify_day(conn, store, "archive_records", DAY)  # its partition is gone now


def test_a_write_after_verification_stops_the_drop_and_the_next_run_exports_again(
    conn: psycopg.Connection, file_store: FileColdStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def late_write(step: str) -> None:
        if step == "recorded":  # between verification and the drop
            conn.execute(
                "INSERT INTO dead_letters (day, id, reason, detail, payload) "
                "VALUES (%s, 'late:1', 'invalid_json', 'late', '')",
                (DAY,),
            )

    monkeypatch.setattr("storage.tier_job._crash_drill", late_write)
    (failed,) = run_tiering(conn, file_store, TODAY, tables=["dead_letters"])
    assert failed.action.startswith("failed") and "written since the export" in failed.action
    assert DAY in partition_days(conn, "dead_letters")  # nothing lost

    monkeypatch.undo()
    (tiered,) = run_tiering(conn, file_store, TODAY, tables=["dead_letters"])
    assert (tiered.action, tiered.rows) == ("tiered", 2)
