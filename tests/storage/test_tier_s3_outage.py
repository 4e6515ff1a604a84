"""Fault: the S3 server dies in the middle of tiering. Nothing is dropped; the next run finishes.

A private S3 server (moto, loopback, its own port) is stopped by pid right
after the job's first upload. The job fails with the store's error and
every day stays in Postgres, whole. With the server back (a new, empty
one: moto keeps objects in memory), the next run exports again, verifies
and drops, and replay gives the same hash as before the outage.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from private_servers import PrivateServer
from tiering_data import DAY, fill_day

from mediation.rules.replay import ReplayRequest, Selection
from mediation.sim.processes import free_port
from replay.digest import ResultDigest
from replay.run import replay_results
from storage.cold import ColdStoreError, S3ColdStore
from storage.db import connect
from storage.tier_job import run_tiering

pytestmark = pytest.mark.integration

MOTO = Path(sys.executable).with_name("moto_server")


def _s3_server() -> tuple[PrivateServer, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            httpx.get(url, timeout=0.5)
        except httpx.HTTPError:
            return False
        return True

    return PrivateServer([str(MOTO), "-H", "127.0.0.1", "-p", str(port)], ready, "S3 server"), url


@pytest.fixture
def s3_server() -> Iterator[tuple[PrivateServer, str]]:
    server, url = _s3_server()
    server.start()
    try:
        yield server, url
    finally:
        server.stop()


class _DiesAfterFirstUpload(S3ColdStore):
    """The real store; the server is stopped (by pid) once the first object is uploaded."""

    def __init__(self, server: PrivateServer, *args: Any):
        super().__init__(*args)
        self.server = server

    def upload(self, local: Path, key: str) -> None:
        super().upload(local, key)
        self.server.stop()


def _replay_hash(conn: psycopg.Connection, store: S3ColdStore) -> str:
    start = int(dt.datetime.combine(DAY, dt.time(), dt.UTC).timestamp() * 1000)
    request = ReplayRequest(Selection.of_range(start, start + 86_400_000), "recompute")
    digest = ResultDigest()
    for result in replay_results(conn, store, request):
        digest.add(result)
    return digest.hexdigest()


def _partition_rows(conn: psycopg.Connection) -> dict[str, int]:
    tables = ("opportunity_records", "delivery_records", "event_records", "archive_records")
    return {
        t: int(conn.execute(f"SELECT count(*) FROM {t} WHERE day = %s", (DAY,)).fetchone()[0])  # type: ignore[index]
        for t in tables
    }


def test_tiering_survives_the_s3_server_dying_mid_job(
    database_url: str, s3_server: tuple[PrivateServer, str]
) -> None:
    server, url = s3_server
    fill_day(database_url, 30)
    bucket, prefix = "outage", uuid.uuid4().hex[:8]
    with connect(database_url, autocommit=True) as conn:
        before_rows = _partition_rows(conn)
        healthy = S3ColdStore(bucket, prefix, url)
        healthy.ensure_bucket()
        before_hash = _replay_hash(conn, healthy)

        dying = _DiesAfterFirstUpload(server, bucket, prefix, url)
        with pytest.raises(ColdStoreError):
            run_tiering(conn, dying, DAY + dt.timedelta(days=31))
        assert _partition_rows(conn) == before_rows  # nothing dropped, nothing lost
        dropped = conn.execute(
            "SELECT count(*) FROM tiering_catalog WHERE dropped_at IS NOT NULL"
        ).fetchone()
        assert dropped == (0,)

        server.start()  # back, empty (moto keeps objects in memory)
        healthy = S3ColdStore(bucket, prefix, url)
        healthy.ensure_bucket()
        results = run_tiering(conn, healthy, DAY + dt.timedelta(days=31))
        assert {r.action for r in results} == {"tiered"}
        assert sum(_partition_rows(conn).values()) == 0  # now in cold storage only
        assert _replay_hash(conn, healthy) == before_hash
