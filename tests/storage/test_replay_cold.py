"""Replay reads the same inputs and archives whether a day is hot, cold, or some of each."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from builders import T0
from tiering_data import DAY, fill_day

from mediation.rules.ulid import encode_ulid
from replay import cold, hot
from storage.cold import FileColdStore
from storage.tier_job import run_tiering
from storage.tiering import TieringError

pytestmark = pytest.mark.integration

NEXT_DAY_MS = T0 + 86_400_000


def test_inputs_and_archives_are_the_same_from_postgres_and_from_parquet(
    database_url: str, file_store: FileColdStore
) -> None:
    keys = fill_day(database_url, 20) + fill_day(database_url, 5, start_ms=NEXT_DAY_MS)
    with psycopg.connect(database_url, autocommit=True) as conn:
        inputs, archives = hot.load_inputs(conn, keys), hot.load_archives(conn, keys)
        assert len(inputs) == len(archives) == 25
        assert any(stored.late_events for stored in inputs.values())

        # Only the first day is old enough: the keys now span both tiers.
        tiered = run_tiering(conn, file_store, DAY + dt.timedelta(days=31))
        assert {(r.day, r.action) for r in tiered} == {(DAY, "tiered")}
        assert hot.load_inputs(conn, keys).keys() < inputs.keys()  # the first day left Postgres

        assert cold.load_inputs(conn, file_store, keys) == inputs
        assert cold.load_archives(conn, file_store, keys) == archives
    for key, stored in inputs.items():
        assert hot.recompute(stored) == archives[key]  # the rules agree with the archive


def test_a_day_catalogued_as_tiered_without_its_objects_is_an_error(
    conn: psycopg.Connection, file_store: FileColdStore
) -> None:
    run_tiering(conn, file_store, DAY + dt.timedelta(days=31))
    elsewhere = FileColdStore(file_store.root.parent / "elsewhere")  # not where it went
    with pytest.raises(TieringError, match="no manifest"):
        cold.load_archives(conn, elsewhere, [encode_ulid(T0, bytes(10))])
