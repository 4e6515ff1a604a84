"""The cold layout reads by directory, with no options, in the tools analysts use first.

pandas, pyarrow (``read_table`` and a hive dataset), polars and DuckDB must
each read every table's directory as one dataset with the same rows; days
exported in the first layout (a ``day`` column in the files, JSON as text,
the manifest beside the data) still replay, and ``mediation tier``
rewrites them, verified.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import orjson
import pandas as pd
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from builders import T0
from tiering_data import DAY, fill_day

from mediation.rules.replay import Selection
from replay import cold
from storage import tier_job
from storage.cold import FileColdStore
from storage.db import connect
from storage.partitions import PARTITIONED_TABLES
from storage.tier_job import run_tiering
from storage.tiering import (
    LEGACY_SCHEMA_VERSION,
    SCHEMA_VERSION,
    Manifest,
    TableDigest,
    legacy_manifest_key,
    manifest_key,
    read_manifest,
)

pytestmark = pytest.mark.integration

NEXT_DAY = DAY + dt.timedelta(days=1)
AFTER_RETENTION = NEXT_DAY + dt.timedelta(days=31)


def _tiered_rows(conn: psycopg.Connection) -> dict[str, int]:
    return {
        str(table): int(rows)
        for table, rows in conn.execute(
            "SELECT table_name, sum(rows) FROM tiering_catalog "
            "WHERE dropped_at IS NOT NULL GROUP BY table_name"
        ).fetchall()
    }


def _counts_by_tool(directory: Path) -> dict[str, int]:
    where = str(directory)
    glob = f"{where}/**/*.parquet"
    return {
        "pandas": len(pd.read_parquet(where)),
        "pyarrow read_table": pq.read_table(where).num_rows,
        "pyarrow hive dataset": ds.dataset(where, partitioning="hive").count_rows(),
        "polars read": pl.read_parquet(where).height,
        "polars scan": pl.scan_parquet(where).select(pl.len()).collect().item(),
        "duckdb glob": _duckdb_count(f"read_parquet('{glob}', hive_partitioning = true)"),
        "duckdb from": _duckdb_count(f"'{where}/*/*.parquet'"),
    }


def _duckdb_count(source: str) -> int:
    [(count,)] = duckdb.sql(f"SELECT count(*) FROM {source}").fetchall()
    return int(count)


def _assert_reads_by_directory(
    store: FileColdStore, expected: dict[str, int], tables: tuple[str, ...] = PARTITIONED_TABLES
) -> None:
    for table in tables:
        counts = _counts_by_tool(store.root / table)
        assert set(counts.values()) == {expected.get(table, 0)}, (table, counts)


def test_every_cold_table_reads_by_directory_in_each_tool(
    database_url: str, file_store: FileColdStore
) -> None:
    fill_day(database_url, 12)
    fill_day(database_url, 7, start_ms=T0 + 86_400_000)
    with connect(database_url, autocommit=True) as conn:
        run_tiering(conn, file_store, AFTER_RETENTION)
        expected = _tiered_rows(conn)
    assert expected["event_records"] == 2 * 12 + 1 + 2 * 7 + 1
    _assert_reads_by_directory(file_store, expected)

    events = file_store.root / "event_records"
    # The day comes from the directory, one type in each tool.
    assert duckdb.sql(f"SELECT DISTINCT typeof(day) FROM '{events}/*/*.parquet'").fetchall() == [
        ("DATE",)
    ]
    assert pl.read_parquet(events).schema["day"] == pl.Date
    days = pd.read_parquet(events)["day"].astype(str)
    assert sorted(set(days)) == [DAY.isoformat(), NEXT_DAY.isoformat()]
    # JSON columns are typed as JSON.
    assert ds.dataset(events, partitioning="hive").schema.field("attrs").type == pa.json_()
    assert duckdb.sql(
        f"SELECT DISTINCT typeof(attrs), attrs->>'k' FROM '{events}/*/*.parquet' "
        "WHERE attrs->>'k' IS NOT NULL"
    ).fetchall() == [("JSON", "v\tw\n")]
    # Nothing but Parquet under a table's directory: the manifests live beside the tables.
    assert {path.suffix for path in events.rglob("*") if path.is_file()} == {".parquet"}
    assert (file_store.root / manifest_key("event_records", DAY)).is_file()


def _to_legacy_layout(conn: psycopg.Connection, store: FileColdStore, table: str) -> None:
    """Rewrite a tiered day the way the first layout had it: what older releases wrote."""
    manifest = read_manifest(store, table, DAY)
    assert manifest is not None and manifest.schema_version == SCHEMA_VERSION
    names = [
        str(name)
        for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    ]
    legacy_schema: pa.Schema | None = None
    digest: TableDigest | None = None
    for exported in manifest.files:
        path = store.root / exported.key
        data = pq.read_table(path)
        for index, field in enumerate(data.schema):  # JSON as text
            if isinstance(field.type, pa.BaseExtensionType):
                data = data.set_column(index, field.name, data.column(index).cast(pa.string()))
        at = names.index("day")
        data = data.add_column(at, "day", pa.array([DAY] * data.num_rows, type=pa.date32()))
        legacy_schema = data.schema
        digest = digest or TableDigest(legacy_schema)
        digest.update(data)
        pq.write_table(data, path, compression="zstd")
    assert legacy_schema is not None and digest is not None
    legacy = Manifest(
        **{
            **manifest.__dict__,
            "schema_version": LEGACY_SCHEMA_VERSION,
            "columns": names,
            "checksum": digest.hexdigest(),
        }
    )
    store.put_bytes(legacy_manifest_key(table, DAY), legacy.to_json())
    store.delete(manifest_key(table, DAY))
    conn.execute(
        "UPDATE tiering_catalog SET checksum = %s WHERE table_name = %s AND day = %s",
        (legacy.checksum, table, DAY),
    )


def test_days_in_the_first_layout_still_replay_and_tiering_rewrites_them(
    database_url: str, file_store: FileColdStore
) -> None:
    keys = fill_day(database_url, 10)
    selection = Selection(keys=tuple(sorted(keys)))
    with connect(database_url, autocommit=True) as conn:
        run_tiering(conn, file_store, AFTER_RETENTION)
        expected = _tiered_rows(conn)
        loaded = cold.load(conn, file_store, selection)
        assert len(loaded.inputs) == 10
        for table in PARTITIONED_TABLES:
            _to_legacy_layout(conn, file_store, table)
        assert read_manifest(file_store, "event_records", DAY).schema_version == 1  # type: ignore[union-attr]
        assert cold.load(conn, file_store, selection) == loaded  # the old layout replays

        results = run_tiering(conn, file_store, AFTER_RETENTION)
        assert {(r.table, r.action) for r in results} == {
            (table, f"rewritten to cold layout {SCHEMA_VERSION}") for table in PARTITIONED_TABLES
        }
        for table in PARTITIONED_TABLES:
            manifest = read_manifest(file_store, table, DAY)
            assert manifest is not None and manifest.schema_version == SCHEMA_VERSION
            assert not file_store.exists(legacy_manifest_key(table, DAY))
            catalog = conn.execute(
                "SELECT rows, checksum FROM tiering_catalog WHERE table_name = %s AND day = %s",
                (table, DAY),
            ).fetchone()
            assert catalog == (manifest.rows, manifest.checksum)
        assert cold.load(conn, file_store, selection) == loaded
        assert _tiered_rows(conn) == expected
        assert run_tiering(conn, file_store, AFTER_RETENTION) == []  # done once
    _assert_reads_by_directory(file_store, expected)


def test_a_rewrite_interrupted_half_way_is_finished_by_the_next_run(
    database_url: str, file_store: FileColdStore
) -> None:
    keys = fill_day(database_url, 40)
    selection = Selection(keys=tuple(sorted(keys)))
    with connect(database_url, autocommit=True) as conn:
        run_tiering(conn, file_store, AFTER_RETENTION, tables=["event_records"])
        loaded = cold.load(conn, file_store, selection)
        manifest = read_manifest(file_store, "event_records", DAY)
        assert manifest is not None
        _to_legacy_layout(conn, file_store, "event_records")
        legacy = orjson.loads(file_store.get_bytes(legacy_manifest_key("event_records", DAY)))
        # As if a rewrite had converted the file and stopped before its manifest.
        path = file_store.root / legacy["files"][0]["key"]
        data = pq.read_table(path).drop_columns(["day"])
        at = data.schema.get_field_index("attrs")
        data = data.set_column(at, "attrs", data.column(at).cast(pa.json_()))
        pq.write_table(data, path, compression="zstd")
        assert cold.load(conn, file_store, selection) == loaded  # a day caught mid-way replays

        results = run_tiering(conn, file_store, AFTER_RETENTION, tables=["event_records"])
        assert [r.action for r in results] == [f"rewritten to cold layout {SCHEMA_VERSION}"]
        assert cold.load(conn, file_store, selection) == loaded
        rewritten = read_manifest(file_store, "event_records", DAY)
        assert rewritten is not None  # the same rows and checksum as the export
        assert (rewritten.rows, rewritten.checksum) == (manifest.rows, manifest.checksum)
    _assert_reads_by_directory(file_store, {"event_records": manifest.rows}, ("event_records",))


def test_a_rewrite_stopped_before_the_catalog_recorded_it_is_finished_by_the_next_run(
    database_url: str, file_store: FileColdStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill_day(database_url, 10)
    with connect(database_url, autocommit=True) as conn:
        run_tiering(conn, file_store, AFTER_RETENTION, tables=["event_records"])
        _to_legacy_layout(conn, file_store, "event_records")
        rewrite = tier_job.rewrite_legacy_day

        def rewrite_then_lose_the_connection(*args: object) -> Manifest:
            rewrite(*args)  # type: ignore[arg-type]
            raise psycopg.OperationalError("connection lost")  # before the catalog update

        monkeypatch.setattr(tier_job, "rewrite_legacy_day", rewrite_then_lose_the_connection)
        (failed,) = run_tiering(conn, file_store, AFTER_RETENTION, tables=["event_records"])
        assert failed.action.startswith("failed:")
        monkeypatch.undo()

        (finished,) = run_tiering(conn, file_store, AFTER_RETENTION, tables=["event_records"])
        assert finished.action == f"rewritten to cold layout {SCHEMA_VERSION}"
        manifest = read_manifest(file_store, "event_records", DAY)
        assert manifest is not None and manifest.schema_version == SCHEMA_VERSION
        assert not file_store.exists(legacy_manifest_key("event_records", DAY))
        catalog = conn.execute(
            "SELECT rows, checksum FROM tiering_catalog "
            "WHERE table_name = 'event_records' AND day = %s",
            (DAY,),
        ).fetchone()
        assert catalog == (manifest.rows, manifest.checksum)  # the catalog knows the new copy
