"""Fault: the sink's Postgres backend is terminated in the middle of a batch.

The batch (hundreds of rows a table, each table's rows one JSON document
expanded by Postgres) is held inside its transaction by a lock another session
takes on the event partition, its backend is terminated with
``pg_terminate_backend``, and the lock is released. The writer must
reconnect and write the batch again, and Postgres must hold every row
exactly once.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from builders import T0, event, opportunity

from mediation.rules.closure import close_opportunity
from mediation.rules.ulid import encode_ulid, ulid_day
from sinks.postgres import COPY_THRESHOLD, PostgresWriter, WriteCounters
from storage.db import connect
from storage.partitions import ensure_partitions, partition_name

pytestmark = pytest.mark.integration


def _items(count: int) -> list[object]:
    items: list[object] = []
    for n in range(count):
        key = encode_ulid(T0 + n, os.urandom(10))
        events = [event(key, f"{key}-{i}", kind, 10 + i)
                  for i, kind in enumerate(("loaded", "impression", "closed"))]  # fmt: skip
        items.append(close_opportunity(opportunity(key, ts_ms=T0 + n), events))
    return items


def test_a_batch_whose_backend_is_terminated_is_written_again_exactly_once(
    database_url: str,
) -> None:
    day = ulid_day(encode_ulid(T0, bytes(10)))
    items = _items(COPY_THRESHOLD)  # 200 opportunities: 600 event rows
    retries: list[int] = []
    writer = PostgresWriter(database_url, max_backoff_s=0.2,
                            counters=WriteCounters(retried=lambda: retries.append(1)))  # fmt: skip
    with connect(database_url, autocommit=True) as admin:
        ensure_partitions(admin, [day])
        blocker = connect(database_url)
        blocker.execute(f"LOCK TABLE {partition_name('event_records', day)} IN EXCLUSIVE MODE")
        done = threading.Event()
        failure: list[BaseException] = []

        def write() -> None:
            try:
                writer.write(items)  # type: ignore[arg-type]
            except BaseException as exc:  # surfaced below
                failure.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=write)
        thread.start()
        waiting = None
        deadline = time.monotonic() + 20
        while waiting is None and time.monotonic() < deadline:
            waiting = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            ).fetchone()
            time.sleep(0.02)
        assert waiting is not None, "the batch never reached the locked partition"
        assert admin.execute("SELECT pg_terminate_backend(%s)", (waiting[0],)).fetchone() == (True,)
        blocker.rollback()  # release the lock: the retry goes through
        blocker.close()
        assert done.wait(30) and not failure, failure
        thread.join()
        writer.close()
        counts = admin.execute(
            "SELECT (SELECT count(*) FROM opportunity_records), (SELECT count(*) FROM "
            "event_records), (SELECT count(DISTINCT (event_id, app_id)) FROM event_records), "
            "(SELECT count(*) FROM archive_records)"
        ).fetchone()
    assert retries, "the terminated batch was not retried"
    assert counts == (200, 600, 600, 200)  # every row, once
