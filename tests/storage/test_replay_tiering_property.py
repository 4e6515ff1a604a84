"""Property: moving any days of any tables to cold storage never changes a replay's hash.

Four days of records are written once; each example copies that database,
takes each (table, day) to one of three states (still hot, exported but
not yet dropped, tiered and dropped) and replays a range over all of it
and a random set of keys, in both modes. The hashes must equal those of
the all-hot original.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from builders import T0
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from tiering_data import fill_day

from mediation.rules.replay import ReplayRequest, Selection
from mediation.rules.ulid import day_of_ms
from mediation.tables import REPLAYED_TABLES
from replay.digest import ResultDigest
from replay.run import replay_results
from storage.cold import FileColdStore
from storage.db import connect
from storage.tier_job import tier_day
from storage.tiering import export_day

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
DAYS = [day_of_ms(T0 + n * DAY_MS) for n in range(4)]
EVERYTHING = Selection.of_range(T0, T0 + 4 * DAY_MS)
STATES = ("hot", "exported", "tiered")


def _hashes(conn: psycopg.Connection, store: FileColdStore, keys: list[str]) -> list[str]:
    hashes = []
    for selection in (EVERYTHING, Selection.of_keys(keys)):
        for mode in ("snapshot", "recompute"):
            digest = ResultDigest()
            for result in replay_results(conn, store, ReplayRequest(selection, mode)):
                digest.add(result)
            hashes.append(digest.hexdigest())
    return hashes


def _url_of(database_url: str, name: str) -> str:
    return urlsplit(database_url)._replace(path=f"/{name}").geturl()


@pytest.fixture
def four_days(database_url: str) -> Iterator[tuple[str, list[str]]]:
    keys: list[str] = []
    for n in range(4):
        keys += fill_day(database_url, 12, T0 + n * DAY_MS, step_ms=3_600_000, apps=("a", "b"))
    yield database_url, keys


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_replay_hashes_do_not_depend_on_where_days_are(
    four_days: tuple[str, list[str]], tmp_path: Path, data: st.DataObject
) -> None:
    source_url, keys = four_days
    picked = data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=8), label="keys")
    states = {
        (table, day): data.draw(st.sampled_from(STATES), label=f"{table} {day}")
        for table in REPLAYED_TABLES
        for day in DAYS
    }
    store = FileColdStore(tmp_path / uuid.uuid4().hex)
    with connect(source_url, autocommit=True) as conn:
        expected = _hashes(conn, store, picked)
    copy = f"mediation_t_{uuid.uuid4().hex[:12]}"
    admin = _url_of(source_url, "postgres")
    source_name = urlsplit(source_url).path.lstrip("/")
    with connect(admin, autocommit=True) as conn:
        # A template must have no connections; a pooler in front keeps idle ones.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (source_name,),
        )
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(copy), sql.Identifier(source_name)))  # fmt: skip
    try:
        with connect(_url_of(source_url, copy), autocommit=True) as conn:
            for (table, day), state in states.items():
                if state == "exported":
                    export_day(conn, store, table, day)
                elif state == "tiered":
                    tier_day(conn, store, table, day)
            assert _hashes(conn, store, picked) == expected
    finally:
        with connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(copy))
            )


def test_the_four_days_are_what_the_property_moves(four_days: tuple[str, list[str]]) -> None:
    source_url, keys = four_days
    with connect(source_url) as conn:
        days = {day for (day,) in conn.execute("SELECT DISTINCT day FROM archive_records")}
    assert days == set(DAYS) and len(keys) == 48
    assert dt.timedelta(days=3) == DAYS[-1] - DAYS[0]
