"""Replay reads the same inputs and archives whether a day is hot, cold, or some of each."""

from __future__ import annotations

import datetime as dt

import orjson
import psycopg
import pytest
from builders import T0
from tiering_data import DAY, fill_day

from mediation.cli import main
from mediation.rules.replay import Selection
from mediation.rules.ulid import encode_ulid
from replay import cold
from replay.run import recompute
from storage import hot_records
from storage.cold import ColdStore, FileColdStore
from storage.db import connect
from storage.tier_job import run_tiering
from storage.tiering import TieringError

pytestmark = pytest.mark.integration

NEXT_DAY_MS = T0 + 86_400_000


def _loaded(conn: psycopg.Connection, store: ColdStore, keys: list[str]) -> cold.Loaded:
    return cold.load(conn, store, Selection(keys=tuple(sorted(keys))))


def test_inputs_and_archives_are_the_same_from_postgres_and_from_parquet(
    database_url: str, store: ColdStore
) -> None:
    keys = fill_day(database_url, 20) + fill_day(database_url, 5, start_ms=NEXT_DAY_MS)
    with connect(database_url, autocommit=True) as conn:
        inputs = hot_records.load_inputs(conn, keys)
        archives = hot_records.load_archives(conn, keys)
        assert len(inputs) == len(archives) == 25
        assert any(stored.late_events for stored in inputs.values())

        # Only the first day is old enough: the keys now span both tiers.
        tiered = run_tiering(conn, store, DAY + dt.timedelta(days=31))
        assert {(r.day, r.action) for r in tiered} == {(DAY, "tiered")}
        # the first day left Postgres
        assert hot_records.load_inputs(conn, keys).keys() < inputs.keys()

        assert _loaded(conn, store, keys).inputs == inputs
        assert _loaded(conn, store, keys).archives == archives
    for key, stored in inputs.items():
        assert recompute(stored) == archives[key]  # the rules agree with the archive


def test_a_day_catalogued_as_tiered_without_its_objects_is_an_error(
    conn: psycopg.Connection, file_store: FileColdStore
) -> None:
    run_tiering(conn, file_store, DAY + dt.timedelta(days=31))
    elsewhere = FileColdStore(file_store.root.parent / "elsewhere")  # not where it went
    with pytest.raises(TieringError, match="no manifest"):
        _loaded(conn, elsewhere, [encode_ulid(T0, bytes(10))])


def test_replay_gives_the_same_hash_hot_and_cold_and_is_recorded(
    database_url: str, file_store: FileColdStore, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    keys = fill_day(database_url, 10)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("SUPABASE_DB_URL", raising=False)
    monkeypatch.setenv("COLD_STORAGE_URL", file_store.root.as_uri())
    missing = encode_ulid(T0 + 5, bytes(10))  # no such opportunity

    def replay(mode: str) -> tuple[int, str, str]:
        code = main(["replay", "--mode", mode, "--format", "jsonl",
                     *(arg for key in [*keys, missing] for arg in ("--key", key))])  # fmt: skip
        out, err = capsys.readouterr()
        return code, out, err.split("result hash: ")[1].strip()

    hot_runs = {mode: replay(mode) for mode in ("snapshot", "recompute")}
    with connect(database_url, autocommit=True) as conn:
        run_tiering(conn, file_store, DAY + dt.timedelta(days=31))
        assert not hot_records.load_inputs(conn, keys)  # the day is cold now
    for mode, (code, out, digest) in hot_runs.items():
        assert code == 1  # one key has no records
        assert replay(mode) == (code, out, digest)  # byte for byte, hash for hash
    snapshot = [orjson.loads(line) for line in hot_runs["snapshot"][1].splitlines()]
    assert all(r.get("inputs_hash_matches") for r in snapshot if "missing" not in r)
    recompute = [orjson.loads(line) for line in hot_runs["recompute"][1].splitlines()]
    assert [r["opportunity_key"] for r in recompute if "missing" not in r if r["changes"]] == [
        keys[0]  # its late impression would change the record
    ]
    with connect(database_url) as conn:
        recorded = conn.execute(
            "SELECT mode, result_hash, diff_summary FROM replay_records ORDER BY id"
        ).fetchall()
    assert [(mode, digest) for mode, digest, _ in recorded] == [
        ("snapshot", hot_runs["snapshot"][2]),
        ("recompute", hot_runs["recompute"][2]),
    ] * 2
    assert recorded[1][2]["changed"] == 1


def test_a_day_split_mid_tiering_reads_each_table_from_where_it_is(
    conn: psycopg.Connection, file_store: FileColdStore
) -> None:
    keys = [row[0] for row in conn.execute("SELECT opportunity_key FROM archive_records")]
    inputs = hot_records.load_inputs(conn, keys)
    archives = hot_records.load_archives(conn, keys)
    # The tier job goes table by table: for a while a day is half in cold storage.
    run_tiering(conn, file_store, DAY + dt.timedelta(days=31), tables=["opportunity_records"])
    assert _loaded(conn, file_store, keys).inputs == inputs
    run_tiering(conn, file_store, DAY + dt.timedelta(days=31), tables=["event_records"])
    assert _loaded(conn, file_store, keys).inputs == inputs
    assert _loaded(conn, file_store, keys).archives == archives
