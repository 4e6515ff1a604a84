"""Through pgbouncer in transaction mode, as production reaches Supabase.

The whole database-path suite also runs through the pooler (``pytest
--via-pooler``, the second pass of ``scripts/test``). These tests prove the
pooler there really is in transaction mode, that session state would break
behind it, and that concurrent sink batches committed through it are all
visible on a direct connection.
"""

from __future__ import annotations

import os
import threading

import psycopg
import pytest
from builders import T0, event, opportunity

from mediation.rules.closure import close_opportunity
from mediation.rules.ulid import encode_ulid
from mediation.sim.devstack import pooler_url
from sinks.postgres import COPY_THRESHOLD, PostgresWriter

pytestmark = pytest.mark.integration


def _admin_console(database_url: str) -> psycopg.Connection:
    return psycopg.connect(
        pooler_url(database_url).rsplit("/", 1)[0] + "/pgbouncer",
        autocommit=True,
        prepare_threshold=None,
    )


def test_the_pooler_runs_in_transaction_mode(direct_database_url: str) -> None:
    with _admin_console(direct_database_url) as console:
        config = {row[0]: row[1] for row in console.execute("SHOW CONFIG").fetchall()}
    assert config["pool_mode"] == "transaction"


def test_a_session_prepared_statement_breaks_behind_it(direct_database_url: str) -> None:
    """Why every connection sets ``prepare_threshold=None`` (storage/db.py)."""
    pooled = pooler_url(direct_database_url)
    # prepare_threshold=0: psycopg prepares every statement on its session.
    with (
        psycopg.connect(pooled, autocommit=True, prepare_threshold=0) as first,
        psycopg.connect(pooled, autocommit=True, prepare_threshold=None) as second,
    ):
        first.execute("SELECT %s::int", (1,))  # prepared on server connection A
        with second.transaction():
            second.execute("SELECT 1")  # second now holds A
            with pytest.raises(psycopg.errors.InvalidSqlStatementName):
                first.execute("SELECT %s::int", (2,))  # runs on B: not prepared there


def test_concurrent_batches_through_it_are_all_visible_directly(
    direct_database_url: str,
) -> None:
    # Large batches: one JSON document a table.
    writers, batches, per_batch = 4, 6, COPY_THRESHOLD + 5
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        writer = PostgresWriter(pooler_url(direct_database_url))
        try:
            for batch in range(batches):
                closed = []
                for n in range(per_batch):
                    key = encode_ulid(T0 + worker * 1000 + batch * 100 + n, os.urandom(10))
                    events = [
                        event(key, f"{key}-l", "loaded", 10),
                        event(key, f"{key}-c", "click", 20),
                    ]
                    closed.append(close_opportunity(opportunity(key), events))
                writer.write(closed)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            writer.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    expected = writers * batches * per_batch
    with psycopg.connect(direct_database_url) as direct:
        counts = [
            direct.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in ("opportunity_records", "archive_records", "event_records")
        ]
    assert counts == [expected, expected, 2 * expected]
