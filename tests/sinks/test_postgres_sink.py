"""The Postgres sink against the real database: idempotent, poison-isolating."""

from __future__ import annotations

import dataclasses
import os

import orjson
import psycopg
import pytest
from builders import T0, opportunity

from mediation.rules.closure import close_opportunity
from mediation.rules.model import (
    Event,
    LateEvent,
    OrphanEvents,
    StoredEvent,
    event_as_dict,
)
from mediation.rules.ulid import encode_ulid
from sinks.postgres import PostgresWriter, WriteCounters, _retryable
from storage.db import connect

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, params=["executemany", "copy"])
def insert_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs both ways rows go in: pipelined inserts, and COPY + staging."""
    if request.param == "copy":
        monkeypatch.setattr("sinks.postgres.COPY_THRESHOLD", 1)
    return str(request.param)


def _event(key: str, event_id: str, type_: str = "loaded", **extra: object) -> Event:
    return Event(
        event_id=event_id,
        app_id="app",
        opportunity_key=key,
        type=type_,
        ts_ms=T0 + 10,
        server_ts_ms=T0 + 10,
        received_at_ms=T0 + 20,
        source_id="net_a",
        **extra,
    )  # type: ignore[arg-type]


def _counts(database_url: str) -> dict[str, int]:
    with connect(database_url) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in (
                "opportunity_records",
                "delivery_records",
                "event_records",
                "archive_records",
                "dead_letters",
            )
        }


def test_writing_the_same_batch_twice_changes_nothing(database_url: str) -> None:
    key = encode_ulid(T0, os.urandom(10))
    closed = close_opportunity(opportunity(key), [_event(key, "e1"), _event(key, "e2", "click")])
    writer = PostgresWriter(database_url)
    writer.write([closed])
    first = _counts(database_url)
    writer.write([closed])
    writer.close()
    assert (
        first
        == _counts(database_url)
        == {
            "opportunity_records": 1,
            "delivery_records": 1,
            "event_records": 2,
            "archive_records": 1,
            "dead_letters": 0,
        }
    )


def test_reused_event_id_with_other_content_is_dead_lettered_not_dropped(
    database_url: str,
) -> None:
    first_key = encode_ulid(T0, os.urandom(10))
    second_key = encode_ulid(T0 + 1, os.urandom(10))
    writer = PostgresWriter(database_url)
    writer.write([LateEvent(StoredEvent(_event(first_key, "same-id"), late=True))])
    writer.write([LateEvent(StoredEvent(_event(second_key, "same-id"), late=True))])
    writer.close()
    with connect(database_url) as conn:
        letters = conn.execute("SELECT reason, opportunity_key FROM dead_letters").fetchall()
    assert letters == [("duplicate_conflict", second_key)]


def test_poison_record_is_isolated_and_the_rest_of_the_batch_is_written(
    database_url: str,
) -> None:
    good_key = encode_ulid(T0, os.urandom(10))
    bad_key = encode_ulid(T0, os.urandom(10))
    good = close_opportunity(opportunity(good_key), [_event(good_key, "ok")])
    # Postgres refuses NUL in jsonb text: a record bad in itself.
    poison = LateEvent(StoredEvent(_event(bad_key, "bad", attrs={"k": "a\x00b"}), late=True))
    writer = PostgresWriter(database_url)
    writer.write([good, poison])
    writer.close()
    with connect(database_url) as conn:
        archived = conn.execute("SELECT opportunity_key FROM archive_records").fetchall()
        letters = conn.execute("SELECT reason, opportunity_key FROM dead_letters").fetchall()
    assert archived == [(good_key,)]
    assert letters == [("unwritable", bad_key)]


def test_reused_event_id_inside_one_batch_is_dead_lettered_too(database_url: str) -> None:
    first_key = encode_ulid(T0, os.urandom(10))
    second_key = encode_ulid(T0 + 1, os.urandom(10))
    writer = PostgresWriter(database_url)
    writer.write(
        [
            LateEvent(StoredEvent(_event(first_key, "same-id"), late=True)),
            LateEvent(StoredEvent(_event(second_key, "same-id"), late=True)),
        ]
    )
    writer.close()
    with connect(database_url) as conn:
        stored = conn.execute("SELECT opportunity_key FROM event_records").fetchall()
        letters = conn.execute("SELECT reason, opportunity_key FROM dead_letters").fetchall()
    assert stored == [(first_key,)]
    assert letters == [("duplicate_conflict", second_key)]


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (psycopg.OperationalError("connection lost"), True),
        (psycopg.errors.AdminShutdown("terminating"), True),
        (psycopg.errors.QueryCanceled("statement timeout"), True),
        (psycopg.errors.DeadlockDetected("deadlock"), True),
        (psycopg.errors.ProgramLimitExceeded("index row too big"), False),
        (psycopg.errors.UntranslatableCharacter("\\u0000"), False),
        (psycopg.errors.NumericValueOutOfRange("bigint"), False),
    ],
)
def test_only_database_trouble_is_retried_bad_records_are_not(
    error: Exception, retryable: bool
) -> None:
    assert _retryable(error) is retryable


def test_event_for_an_archived_opportunity_is_stored_late_not_orphaned(database_url: str) -> None:
    # The worker forgot the closed opportunity (tombstone TTL); the database did not.
    key = encode_ulid(T0, os.urandom(10))
    closed = close_opportunity(opportunity(key), [_event(key, "e1")])
    straggler = StoredEvent(_event(key, "e2", "click"), excluded_reason="unknown_opportunity")
    writer = PostgresWriter(database_url)
    writer.write([closed])
    writer.write([OrphanEvents(key, (straggler,))])
    writer.close()
    with connect(database_url) as conn:
        row = conn.execute(
            "SELECT late, excluded_reason FROM event_records WHERE event_id = 'e2'"
        ).fetchone()
    assert row == (True, None)


def test_a_late_event_leaves_the_archive_and_records_what_it_would_have_changed(
    database_url: str,
) -> None:
    key = encode_ulid(T0, os.urandom(10))
    impression = _event(key, "e1", "impression", revenue_micros=1_500, currency="USD")
    closed = close_opportunity(opportunity(key), [_event(key, "e0"), impression])
    late_click = _event(key, "e2", "click")  # within the window, but after the close
    writer = PostgresWriter(database_url)
    # Archive and late event in one batch: the ledger must still find the archive.
    writer.write([closed, LateEvent(StoredEvent(late_click, late=True))])
    writer.write([LateEvent(StoredEvent(late_click, late=True))])  # replayed: no-op
    writer.close()
    with connect(database_url) as conn:
        outcome = conn.execute("SELECT outcome FROM archive_records").fetchone()
        ledger = conn.execute(
            "SELECT opportunity_key, event_id, rule_version, changes FROM amendment_records"
        ).fetchall()
    assert outcome == (closed.archive.outcome,)  # the archive stands
    assert len(ledger) == 1
    stored_key, event_id, rule_version, changes = ledger[0]
    assert (stored_key, event_id, rule_version) == (key, "e2", closed.archive.rule_version)
    assert changes["outcome"] == {"archived": "impressed", "with_late": "clicked"}
    assert changes["counts"]["archived"] == dict(closed.archive.counts)
    assert changes["counts"]["with_late"]["click"] == 1


def test_committed_batches_and_rows_are_reported(database_url: str) -> None:
    written: list[int] = []
    key = encode_ulid(T0, os.urandom(10))
    closed = close_opportunity(opportunity(key), [_event(key, "e1")])
    writer = PostgresWriter(database_url, counters=WriteCounters(batch_written=written.append))
    writer.write([closed])
    writer.close()
    assert written == [4]  # opportunity, delivery, event, archive: one transaction


def test_another_apps_event_after_the_tombstone_expired_is_a_dead_letter_not_a_late_event(
    database_url: str,
) -> None:
    # The worker forgot the closed opportunity; app "intruder" sends an
    # impression for app "app"'s key. It must not join the opportunity.
    key = encode_ulid(T0, os.urandom(10))
    impression = _event(key, "e1", "impression", revenue_micros=1_500, currency="USD")
    closed = close_opportunity(opportunity(key), [impression])
    foreign = dataclasses.replace(
        _event(key, "x1", "impression", revenue_micros=1_255, currency="USD"), app_id="intruder"
    )
    straggler = StoredEvent(foreign, excluded_reason="unknown_opportunity")
    writer = PostgresWriter(database_url)
    writer.write([closed])
    writer.write([OrphanEvents(key, (straggler,))])
    writer.write([OrphanEvents(key, (straggler,))])  # a resend lands the same letter once
    writer.close()
    with connect(database_url) as conn:
        stored = conn.execute("SELECT app_id, event_id FROM event_records").fetchall()
        letters = conn.execute(
            "SELECT reason, app_id, opportunity_key, payload FROM dead_letters"
        ).fetchall()
        ledger = conn.execute("SELECT count(*) FROM amendment_records").fetchone()
    assert stored == [("app", "e1")]
    assert [letter[:3] for letter in letters] == [("opportunity_app_mismatch", "intruder", key)]
    assert orjson.loads(letters[0][3]) == event_as_dict(foreign)
    assert ledger == (0,)


def test_the_sinks_own_app_mismatch_letter_carries_the_source_position_and_bytes(
    database_url: str,
) -> None:
    # The letter the sink makes for another app's orphan is a dead letter
    # like the worker's: where the event was read and the bytes that arrived.
    key = encode_ulid(T0, os.urandom(10))
    closed = close_opportunity(opportunity(key), [_event(key, "e1", "impression")])
    arrived = b'{"schema":"event.v1","as":"it arrived"}'
    foreign = dataclasses.replace(
        _event(key, "x1", "impression"),
        app_id="intruder",
        source_partition=3,
        source_offset=41,
        source_bytes=arrived,
    )
    writer = PostgresWriter(database_url, events_topic="t.events.v1")
    writer.write([closed])
    writer.write(
        [OrphanEvents(key, (StoredEvent(foreign, excluded_reason="unknown_opportunity"),))]
    )
    writer.close()
    with connect(database_url) as conn:
        letters = conn.execute(
            "SELECT reason, source_topic, source_partition, source_offset, payload "
            "FROM dead_letters"
        ).fetchall()
    assert letters == [("opportunity_app_mismatch", "t.events.v1", 3, 41, arrived)]


def test_a_resend_after_the_tombstone_expired_writes_no_amendment(database_url: str) -> None:
    # The events were counted on time; the same copies come back as orphans
    # (a later sent_at, so a later server_ts) once the worker forgot them.
    key = encode_ulid(T0, os.urandom(10))
    on_time = [_event(key, f"e{n}") for n in range(3)]
    closed = close_opportunity(opportunity(key), on_time)
    resent = tuple(
        StoredEvent(
            dataclasses.replace(e, server_ts_ms=e.server_ts_ms + 5, received_at_ms=T0 + 9_000),
            excluded_reason="unknown_opportunity",
        )
        for e in on_time
    )
    writer = PostgresWriter(database_url)
    writer.write([closed])
    writer.write([OrphanEvents(key, resent)])
    writer.close()
    with connect(database_url) as conn:
        ledger = conn.execute("SELECT event_id, changes FROM amendment_records").fetchall()
        stored = conn.execute("SELECT count(*) FROM event_records WHERE NOT late").fetchone()
        letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert ledger == []
    assert stored == (3,)
    assert letters == (0,)
