"""Exporting a day partition to Parquet and verifying it, on file:// and on the S3 server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiering_data import DAY

from storage.cold import ColdStore, ColdStoreError, FileColdStore, open_cold_store
from storage.partitions import PARTITIONED_TABLES
from storage.tiering import (
    TableDigest,
    TieringError,
    export_day,
    manifest_key,
    read_manifest,
    verify_day,
)

pytestmark = pytest.mark.integration


def test_every_partitioned_table_exports_and_verifies(
    conn: psycopg.Connection, store: ColdStore
) -> None:
    for table in PARTITIONED_TABLES:
        manifest = export_day(conn, store, table, DAY)
        assert store.exists(manifest_key(table, DAY))
        assert verify_day(conn, store, table, DAY) == manifest
        assert read_manifest(store, table, DAY) == manifest
    counts = {table: read_manifest(store, table, DAY).rows for table in PARTITIONED_TABLES}  # type: ignore[union-attr]
    assert counts["archive_records"] == 30 and counts["event_records"] == 61
    assert counts["dead_letters"] == 1


def test_rows_are_sorted_by_key_in_zstd_parquet(
    conn: psycopg.Connection, file_store: FileColdStore
) -> None:
    store = file_store
    manifest = export_day(conn, store, "event_records", DAY, rows_per_file=25, batch_rows=10)
    assert [f.rows for f in manifest.files] == [30, 30, 1]  # split after the batch that filled one
    assert manifest.sort == ["opportunity_key", "server_ts", "event_id", "app_id"]
    keys: list[str] = []
    for exported in manifest.files:
        parquet = pq.ParquetFile(store.root / exported.key)
        assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
        keys += parquet.read(columns=["opportunity_key"]).column(0).to_pylist()
    assert keys == sorted(keys)


def test_verification_fails_when_postgres_or_the_objects_differ(
    conn: psycopg.Connection, file_store: FileColdStore
) -> None:
    store = file_store
    export_day(conn, store, "archive_records", DAY)
    conn.execute(
        "DELETE FROM archive_records WHERE opportunity_key = "
        "(SELECT min(opportunity_key) FROM archive_records)"
    )
    with pytest.raises(TieringError, match="Postgres holds 29 rows, the export 30"):
        verify_day(conn, store, "archive_records", DAY)

    export_day(conn, store, "event_records", DAY)
    key = manifest_key("event_records", DAY)
    tampered = store.get_bytes(key).replace(b'"checksum": "', b'"checksum": "0')
    store.put_bytes(key, tampered)
    with pytest.raises(TieringError, match="checksum"):
        verify_day(conn, store, "event_records", DAY)

    with pytest.raises(TieringError, match="no manifest"):
        verify_day(conn, store, "delivery_records", DAY)


def test_cold_store_urls() -> None:
    assert isinstance(open_cold_store("file:///tmp/cold"), FileColdStore)
    with pytest.raises(ColdStoreError, match="file:///abs/path or s3://bucket/prefix"):
        open_cold_store("gs://bucket/x")
    with pytest.raises(ColdStoreError, match="leaves the store's root"):
        FileColdStore(Path("/tmp/cold")).exists("../etc/passwd")


def test_the_digest_does_not_depend_on_batching_and_sees_every_value() -> None:
    schema = pa.schema(
        [
            ("k", pa.string()),
            ("n", pa.int64()),
            ("b", pa.bool_()),
            ("at", pa.timestamp("us", tz="UTC")),
        ]
    )
    moment = dt.datetime(2026, 1, 15, 1, 2, 3, 456789, tzinfo=dt.UTC)
    rows = {"k": ["a", "", None, "dé"], "n": [1, None, 3, 2**40], "b": [True, None, False, True],
            "at": [moment, None, moment, moment]}  # fmt: skip
    table = pa.table(rows, schema=schema)

    def digest(*parts: pa.Table) -> str:
        d = TableDigest(schema)
        for part in parts:
            d.update(part)
        return d.hexdigest()

    whole = digest(table)
    assert digest(table.slice(0, 1), table.slice(1, 2), table.slice(3)) == whole
    for column, value in (("k", None), ("n", 0), ("b", False), ("at", None)):
        changed = dict(rows, **{column: [*rows[column][:1], value, *rows[column][2:]]})
        if changed != rows:
            assert digest(pa.table(changed, schema=schema)) != whole, column
    empty_for_null = dict(rows, k=["a", "", "", "dé"])
    assert digest(pa.table(empty_for_null, schema=schema)) != whole
