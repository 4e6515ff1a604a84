"""Replay and the amendment ledger read an opportunity's inputs by (opportunity, app).

An event of another app stored under an opportunity's key (here an orphan
of app ``intruder``, stored before app ``app``'s opportunity was archived)
is never counted, amended or replayed as that opportunity's input, whether
its day is in Postgres or in Parquet.
"""

from __future__ import annotations

import datetime as dt
import os

import psycopg
import pytest
from builders import T0, event, opportunity

from mediation.rules.closure import close_opportunity
from mediation.rules.model import LateEvent, OrphanEvents, StoredEvent
from mediation.rules.replay import ReplayRequest, Selection
from mediation.rules.ulid import encode_ulid, ulid_day
from replay.run import replay_results
from sinks.postgres import PostgresWriter
from storage import hot_records
from storage.cold import FileColdStore
from storage.db import connect
from storage.tier_job import run_tiering

pytestmark = pytest.mark.integration


def _store_with_a_foreign_event(database_url: str) -> str:
    key = encode_ulid(T0, os.urandom(10))
    foreign = event(key, "x1", "impression", 20, app_id="intruder", revenue_micros=1_255)
    writer = PostgresWriter(database_url)
    # No archive yet when the intruder's event is written: an orphan of its own app.
    writer.write(
        [OrphanEvents(key, (StoredEvent(foreign, excluded_reason="unknown_opportunity"),))]
    )
    writer.write([close_opportunity(opportunity(key), [event(key, "e1", "impression", 10)])])
    writer.close()
    return key


def _replayed(conn: psycopg.Connection, store: FileColdStore, key: str, mode: str) -> dict:  # type: ignore[type-arg]
    (result,) = replay_results(conn, store, ReplayRequest(Selection.of_keys([key]), mode))
    return result


@pytest.mark.parametrize("tier", ["hot", "cold"])
def test_another_apps_event_under_the_key_is_not_replayed_as_its_input(
    database_url: str, file_store: FileColdStore, tier: str
) -> None:
    key = _store_with_a_foreign_event(database_url)
    with connect(database_url, autocommit=True) as conn:
        if tier == "cold":
            tiered = run_tiering(conn, file_store, ulid_day(key) + dt.timedelta(days=31))
            assert {result.action for result in tiered} == {"tiered"}
        snapshot = _replayed(conn, file_store, key, "snapshot")
        recomputed = _replayed(conn, file_store, key, "recompute")
    assert [e["event_id"] for e in snapshot["counted_events"]] == ["e1"]
    assert snapshot["inputs_hash_matches"] is True
    assert recomputed["changes"] == {}
    assert recomputed["recomputed"]["revenue_micros"] == 500


def test_the_amendment_of_a_late_event_leaves_another_apps_event_out(database_url: str) -> None:
    key = _store_with_a_foreign_event(database_url)
    late_click = event(key, "e2", "click", 30)
    writer = PostgresWriter(database_url)
    writer.write([LateEvent(StoredEvent(late_click, late=True))])
    writer.close()
    with connect(database_url, autocommit=True) as conn:
        (stored,) = hot_records.load_inputs(conn, [key]).values()
        (changes,) = conn.execute("SELECT changes FROM amendment_records").fetchone() or (None,)
    assert {e.app_id for e in stored.events + stored.late_events} == {"app"}
    assert "revenue_micros" not in changes
    assert changes["outcome"] == {"archived": "impressed", "with_late": "clicked"}


def test_stragglers_for_a_tiered_day_are_settled_against_its_cold_archive(
    database_url: str, file_store: FileColdStore
) -> None:
    # The day of the opportunity was tiered; then, after the worker forgot
    # it, the owner's straggler and another app's event arrive as orphans.
    key = encode_ulid(T0, os.urandom(10))
    writer = PostgresWriter(database_url, cold_store=file_store)
    writer.write([close_opportunity(opportunity(key), [event(key, "e1", "impression", 10)])])
    with connect(database_url, autocommit=True) as conn:
        tiered = run_tiering(conn, file_store, ulid_day(key) + dt.timedelta(days=31))
        assert {result.action for result in tiered} == {"tiered"}
    own = event(key, "e2", "click", 40)
    foreign = event(key, "x1", "impression", 50, app_id="intruder", revenue_micros=1_255)
    orphaned = tuple(StoredEvent(e, excluded_reason="unknown_opportunity") for e in (own, foreign))
    writer.write([OrphanEvents(key, orphaned)])
    writer.close()
    with connect(database_url) as conn:
        stored = conn.execute(
            "SELECT app_id, event_id, late, excluded_reason FROM event_records"
        ).fetchall()
        letters = conn.execute("SELECT reason, app_id FROM dead_letters").fetchall()
    assert stored == [("app", "e2", True, None)]  # the owner's: late, as after any close
    assert letters == [("opportunity_app_mismatch", "intruder")]
