"""Which app owns an archived opportunity whose day was tiered to cold storage.

The sink settles an event the worker no longer remembers (its tombstone
expired) against the archive: late for the owner's app, a dead letter for
any other (docs/contracts.md section 6, "Ownership"). The gateway accepts
keys up to 35 days old and days leave Postgres after 30, so for a
straggler the archive may already be Parquet. Only those days are read:
the catalog says which, and each file is read in place, the
``opportunity_key`` statistics of its row groups pruning what cannot hold
the keys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import psycopg
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .cold import ColdStore
from .tiered_days import TieredDays
from .tiering import READ_ERRORS, TieringError, read_manifest

__all__ = ["cold_archive_owners"]


def _cold_archive_days(conn: psycopg.Connection, days: Iterable[dt.date]) -> list[dt.date]:
    tiered = TieredDays.read(conn, sorted(set(days)))
    return sorted(day for table, day in tiered.dropped if table == "archive_records")


def cold_archive_owners(
    conn: psycopg.Connection, store: ColdStore, keys_by_day: Mapping[dt.date, Iterable[str]]
) -> dict[str, str]:
    """``opportunity_key -> app_id`` of the given keys archived on days now in cold storage.

    Raises ``TieringError`` when a catalogued day cannot be read.
    """
    owners: dict[str, str] = {}
    for day in _cold_archive_days(conn, keys_by_day):
        manifest = read_manifest(store, "archive_records", day)
        if manifest is None:
            raise TieringError(f"archive_records {day}: catalogued as tiered, but no manifest")
        keys = sorted(set(keys_by_day[day]))
        for exported in manifest.files:
            try:
                found = pq.read_table(
                    store.arrow_source(exported.key),
                    columns=["opportunity_key", "app_id"],
                    filters=pc.field("opportunity_key").isin(keys),
                )
            except READ_ERRORS as exc:
                raise TieringError(f"archive_records {day}: {exported.key}: {exc}") from exc
            keys_found, apps = found["opportunity_key"].to_pylist(), found["app_id"].to_pylist()
            owners.update(zip(keys_found, apps, strict=True))
    return owners
