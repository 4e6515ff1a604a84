"""The warm and cold tiers: tiered days move to a cheaper storage class, then are deleted.

For every day in ``tiering_catalog`` that was dropped from Postgres
(``mediation.rules.tiering.lifecycle_action`` decides):

- **move** (older than the warm retention, 180 days): each Parquet file of
  the day goes to the cold storage class (``MEDIATION_COLD_STORAGE_CLASS``,
  STANDARD_IA by default); the manifest stays in the standard class (it is
  tiny and read by every replay). The catalog records the class and when.
  Re-running after a crash moves the day's files again (idempotent).
- **delete** (older than the retention, 365 days): the catalog row is
  marked deleted and an audit record written, in one transaction; then
  the files go, the manifest last. A crash in between leaves objects of a
  day marked deleted; the next run finds its manifest and deletes again.

Replay reads warm and cold days alike; a deleted day's keys answer
"deleted by retention".
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

import psycopg

from mediation.rules.tiering import CatalogDay, lifecycle_action

from .audit import record_audit
from .cold import ColdStore, ColdStoreError
from .tier_job import TierResult
from .tiering import legacy_manifest_key, manifest_key, read_manifest

__all__ = ["age_tiered_days"]

log = logging.getLogger(__name__)


def _catalog(conn: psycopg.Connection, tables: Iterable[str]) -> list[tuple[CatalogDay, int]]:
    rows = conn.execute(
        "SELECT table_name, day, dropped_at IS NOT NULL, moved_at IS NOT NULL, "
        "deleted_at IS NOT NULL, rows FROM tiering_catalog WHERE table_name = ANY(%s) "
        "ORDER BY table_name, day",
        (list(tables),),
    ).fetchall()
    return [(CatalogDay(str(t), day, dropped, moved, deleted), int(n))
            for t, day, dropped, moved, deleted, n in rows]  # fmt: skip


def _data_files(store: ColdStore, table: str, day: dt.date) -> list[str] | None:
    """The day's Parquet files, or ``None`` when its manifest is gone (nothing left)."""
    manifest = read_manifest(store, table, day)
    return None if manifest is None else [exported.key for exported in manifest.files]


def _delete(conn: psycopg.Connection, store: ColdStore, entry: CatalogDay, files: list[str],
            retain_days: int) -> None:  # fmt: skip
    if not entry.deleted:
        with conn.transaction():
            before = conn.execute(
                "UPDATE tiering_catalog SET deleted_at = now() WHERE table_name = %s AND day = %s "
                "RETURNING location, rows, checksum, exported_at::text, storage_class",
                (entry.table, entry.day),
            ).fetchone()
            assert before is not None
            record_audit(
                conn,
                "tiering",
                "cold.delete",
                f"{entry.table}/{entry.day.isoformat()}",
                before=dict(
                    zip(
                        ("location", "rows", "checksum", "exported_at", "storage_class"),
                        before,
                        strict=True,
                    )
                ),
                after={"retain_days": retain_days},
            )
    for key in files:
        store.delete(key)
    # The manifests last: while one is there, "objects remain" (either layout's).
    store.delete(legacy_manifest_key(entry.table, entry.day))
    store.delete(manifest_key(entry.table, entry.day))


def _move(
    conn: psycopg.Connection, store: ColdStore, entry: CatalogDay, files: list[str], cls: str
) -> str:
    now_in = {store.set_storage_class(key, cls) for key in files}
    recorded = ",".join(sorted(now_in)) or cls
    conn.execute(
        "UPDATE tiering_catalog SET moved_at = now(), storage_class = %s "
        "WHERE table_name = %s AND day = %s",
        (recorded, entry.table, entry.day),
    )
    return recorded


def age_tiered_days(
    conn: psycopg.Connection,
    store: ColdStore,
    today: dt.date,
    *,
    tables: Iterable[str],
    warm_days: int,
    retain_days: int,
    storage_class: str,
    dry_run: bool = False,
) -> list[TierResult]:
    """Move warm days to the cold class and delete days past retention; ``conn`` autocommits."""
    results = []
    for entry, rows in _catalog(conn, tables):
        action = lifecycle_action(entry, today, warm_days, retain_days)
        if action is None:
            continue
        files = _data_files(store, entry.table, entry.day)
        if files is None:
            if action == "move":
                results.append(TierResult(entry.table, entry.day, rows,
                                          f"failed: no manifest in {store.url}"))  # fmt: skip
            elif not entry.deleted:  # gone already, yet not marked: mark and audit
                _delete(conn, store, entry, [], retain_days)
            continue
        if dry_run:
            verb = "would delete" if action == "delete" else f"would move to {storage_class}"
            results.append(TierResult(entry.table, entry.day, rows, verb))
            continue
        try:
            if action == "delete":
                _delete(conn, store, entry, files, retain_days)
                done = f"deleted (older than {retain_days} days)"
            else:
                done = f"moved to {_move(conn, store, entry, files, storage_class)}"
        except (ColdStoreError, psycopg.Error) as exc:
            log.error("%s %s: %s failed: %s", entry.table, entry.day, action, exc)
            results.append(TierResult(entry.table, entry.day, rows, f"failed: {exc}"))
            continue
        results.append(TierResult(entry.table, entry.day, rows, done))
    return results
