"""Warm days move to the cold storage class; days past retention are deleted, with an audit."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
from tiering_data import DAY

from mediation.cli import main
from mediation.rules.replay import ReplayRequest, Selection
from replay.digest import ResultDigest
from replay.run import replay_results
from storage.cold import ColdStore, ColdStoreError, S3ColdStore
from storage.lifecycle import age_tiered_days
from storage.partitions import PARTITIONED_TABLES
from storage.tier_job import run_tiering
from storage.tiering import manifest_key, read_manifest

pytestmark = pytest.mark.integration

DAY_RANGE = Selection.of_range(
    int(dt.datetime.combine(DAY, dt.time(), dt.UTC).timestamp() * 1000),
    int(dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp() * 1000),
)


def _age(conn: psycopg.Connection, store: ColdStore, days_after: int, **options: Any) -> list[Any]:
    return age_tiered_days(conn, store, DAY + dt.timedelta(days=days_after),
                           tables=PARTITIONED_TABLES, warm_days=180, retain_days=365,
                           storage_class="STANDARD_IA", **options)  # fmt: skip


def _replay_hash(conn: psycopg.Connection, store: ColdStore) -> tuple[int, str]:
    digest = ResultDigest()
    for result in replay_results(conn, store, ReplayRequest(DAY_RANGE, "recompute")):
        digest.add(result)
    return digest.records, digest.hexdigest()


def _storage_class(store: ColdStore, key: str) -> str:
    assert isinstance(store, S3ColdStore)
    head = store._client.head_object(Bucket=store.bucket, Key=store._key(key))
    return str(head.get("StorageClass", "STANDARD"))


def test_days_go_warm_then_cold_then_are_deleted_with_an_audit_record(
    conn: psycopg.Connection, store: ColdStore
) -> None:
    hot = _replay_hash(conn, store)
    row = conn.execute("SELECT min(opportunity_key) FROM archive_records").fetchone()
    assert row is not None
    run_tiering(conn, store, DAY + dt.timedelta(days=31))
    assert _age(conn, store, 180) == []  # still warm
    planned = _age(conn, store, 181, dry_run=True)
    assert {r.action for r in planned} == {"would move to STANDARD_IA"}
    catalogued = conn.execute("SELECT count(*) FROM tiering_catalog").fetchone()
    assert catalogued is not None and len(planned) == catalogued[0] >= 6  # every tiered table
    moved = _age(conn, store, 181)
    # A file:// store has one class: the catalog records the tier only.
    assert all(r.action in ("moved to STANDARD_IA", "moved to FILE") for r in moved)
    assert len(moved) == len(planned)
    manifest = read_manifest(store, "event_records", DAY)
    assert manifest is not None
    if isinstance(store, S3ColdStore):
        assert _storage_class(store, manifest.files[0].key) == "STANDARD_IA"
        assert _storage_class(store, manifest_key("event_records", DAY)) == "STANDARD"
    assert _replay_hash(conn, store) == hot  # replay reads the cold tier as it read the hot one
    assert _age(conn, store, 200) == []  # moved once

    assert {r.action for r in _age(conn, store, 366)} == {"deleted (older than 365 days)"}
    assert read_manifest(store, "event_records", DAY) is None
    assert not store.exists(manifest.files[0].key)
    audits = conn.execute(
        "SELECT actor, action, subject, before->>'rows', after FROM audit_records "
        "WHERE action = 'cold.delete' ORDER BY subject"
    ).fetchall()
    assert [row[2] for row in audits] == sorted(
        f"{table}/{DAY}" for (table,) in conn.execute("SELECT table_name FROM tiering_catalog")
    )
    assert audits[0][0] == "tiering" and audits[0][4] == {"retain_days": 365}
    assert _replay_hash(conn, store)[0] == 0
    (missing,) = replay_results(conn, store, ReplayRequest(Selection.of_keys([row[0]])))
    assert missing["missing"] == f"archive record (deleted by retention: {DAY})"
    assert _age(conn, store, 400) == []  # nothing left to do


def test_a_deletion_interrupted_after_its_audit_record_finishes_on_the_next_run(
    conn: psycopg.Connection, store: ColdStore
) -> None:
    run_tiering(conn, store, DAY + dt.timedelta(days=31))
    # A crash right after the catalog and audit were written: objects remain.
    conn.execute("UPDATE tiering_catalog SET deleted_at = now()")
    assert read_manifest(store, "event_records", DAY) is not None
    assert {r.action for r in _age(conn, store, 366)} == {"deleted (older than 365 days)"}
    assert read_manifest(store, "event_records", DAY) is None
    assert conn.execute("SELECT count(*) FROM audit_records").fetchone() == (0,)  # not twice


def test_storage_classes_that_need_a_restore_are_refused(store: ColdStore) -> None:
    store.put_bytes("x/one", b"1")
    if isinstance(store, S3ColdStore):
        with pytest.raises(ColdStoreError, match="without a restore"):
            store.set_storage_class("x/one", "GLACIER")
        assert store.set_storage_class("x/one", "ONEZONE_IA") == "ONEZONE_IA"
    else:
        assert store.set_storage_class("x/one", "STANDARD_IA") == "FILE"  # one class
    with pytest.raises(ColdStoreError):
        store.set_storage_class("x/none", "STANDARD_IA")


def test_the_cli_checks_the_retention_order_and_the_storage_class(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["tier", "--hot-days", "30", "--warm-days", "20"]) == 2
    assert "hot days < warm days <= retain days" in capsys.readouterr().err
    assert main(["tier", "--retain-days", "100"]) == 2
    assert main(["tier", "--cold-storage-class", "DEEP_ARCHIVE"]) == 2
    assert "cold days directly" in capsys.readouterr().err
