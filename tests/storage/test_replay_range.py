"""Replay by time range: filters, chunks, outputs, config snapshots, days split across tiers."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from builders import T0, event
from tiering_data import DAY, fill_day, push_two_config_versions

from mediation.cli import main
from mediation.rules.model import LateEvent, StoredEvent
from mediation.rules.replay import ReplayRequest, Selection
from replay import cold
from replay.digest import ResultDigest
from replay.run import replay_results
from sinks.postgres import PostgresWriter
from storage.cold import ColdStore, FileColdStore
from storage.db import connect
from storage.tier_job import run_tiering

pytestmark = pytest.mark.integration

MINUTE = 60_000
NEXT_DAY_MS = T0 + 86_400_000
TIER_FIRST_DAY = DAY + dt.timedelta(days=31)


def _fill(database_url: str) -> list[str]:
    """40 opportunities a minute apart on DAY, 10 on the next day; apps a/b, placements p/q/r."""
    keys = fill_day(database_url, 40, step_ms=MINUTE, apps=("a", "b"), placements=("p", "q", "r"))
    return keys + fill_day(database_url, 10, NEXT_DAY_MS, step_ms=MINUTE, apps=("a", "b"))


def _replay(
    conn: psycopg.Connection, store: ColdStore, request: ReplayRequest, chunk_rows: int = 20_000
) -> tuple[list[dict[str, Any]], str]:
    digest = ResultDigest()
    results = list(replay_results(conn, store, request, chunk_rows))
    for result in results:
        digest.add(result)
    return results, digest.hexdigest()


def _range(start_ms: int, end_ms: int, **filters: str) -> Selection:
    return Selection.of_range(start_ms, end_ms, **filters)


def test_a_range_gives_the_same_results_hot_cold_and_split_and_in_any_chunking(
    database_url: str, store: ColdStore
) -> None:
    keys = _fill(database_url)
    both_days = _range(T0, NEXT_DAY_MS + 3_600_000)
    requests = [ReplayRequest(both_days, mode) for mode in ("snapshot", "recompute")]
    with connect(database_url, autocommit=True) as conn:
        hot = [_replay(conn, store, request) for request in requests]
        assert [r["opportunity_key"] for r in hot[0][0]] == sorted(keys)
        assert _replay(conn, store, requests[1], chunk_rows=7) == hot[1]
        # Half-way through tiering: events are cold, the rest still hot.
        run_tiering(conn, store, TIER_FIRST_DAY, tables=["event_records"])
        assert [_replay(conn, store, request) for request in requests] == hot
        run_tiering(conn, store, TIER_FIRST_DAY)
        assert [_replay(conn, store, request) for request in requests] == hot
        assert _replay(conn, store, requests[1], chunk_rows=7) == hot[1]


def test_filters_and_bounds_select_exactly_the_matching_opportunities(
    database_url: str, store: ColdStore
) -> None:
    keys = _fill(database_url)
    first_day = keys[:40]
    with connect(database_url, autocommit=True) as conn:
        for tiered in (False, True):
            if tiered:
                run_tiering(conn, store, TIER_FIRST_DAY)

            def selected(selection: Selection) -> list[str]:
                results, _ = _replay(conn, store, ReplayRequest(selection))
                return [result["opportunity_key"] for result in results]

            # Half-open: the opportunity at exactly `to` is not in.
            assert selected(_range(T0 + 10 * MINUTE, T0 + 20 * MINUTE)) == first_day[10:20]
            assert selected(_range(T0, T0 + 40 * MINUTE, app_id="b")) == first_day[1::2]
            assert selected(_range(T0, T0 + 40 * MINUTE, placement_id="q")) == first_day[1::3]
            assert (
                selected(_range(T0, T0 + 40 * MINUTE, app_id="a", placement_id="r"))
                == (first_day[2::6])
            )
            assert selected(_range(T0, T0 + 40 * MINUTE, app_id="nobody")) == []


def test_rows_written_for_a_day_after_it_was_tiered_are_read_once(
    database_url: str, file_store: FileColdStore
) -> None:
    keys = _fill(database_url)
    request = ReplayRequest(_range(T0, T0 + 40 * MINUTE), "recompute")
    with connect(database_url, autocommit=True) as conn:
        run_tiering(conn, file_store, TIER_FIRST_DAY)
        before, _ = _replay(conn, file_store, request)
    # Very late: an impression for a tiered opportunity, and a resent copy of
    # an event already in the cold copy. The sink creates the partition again.
    shift = 5 * MINUTE
    impression = event(keys[5], f"{keys[5]}-very-late", "impression", shift + 15, app_id="b")
    resent = event(keys[5], f"{keys[5]}-1", "loaded", shift + 10, received_after=50, app_id="b")
    writer = PostgresWriter(database_url)
    writer.write([LateEvent(StoredEvent(impression, late=True)),
                  LateEvent(StoredEvent(resent, late=True))])  # fmt: skip
    writer.close()
    with connect(database_url, autocommit=True) as conn:
        after, _ = _replay(conn, file_store, request)
        actions = {r.table: r.action for r in run_tiering(conn, file_store, TIER_FIRST_DAY)}
        assert actions["event_records"] == "tiered (merged with its cold copy)"
        assert _replay(conn, file_store, request)[0] == after  # merged: the same inputs, once
    changed = {r["opportunity_key"]: r["changes"] for r in after if r["changes"]}
    assert set(changed) == {r["opportunity_key"] for r in before if r["changes"]} | {keys[5]}
    # Counted once: the impression is new; the resent copy is not a second loaded.
    assert changed[keys[5]]["counts"]["recomputed"] == {"click": 1, "impression": 1, "loaded": 1}


def test_recompute_under_a_named_config_snapshot(database_url: str, store: ColdStore) -> None:
    keys = _fill(database_url)
    with connect(database_url, autocommit=True) as conn:
        push_two_config_versions(conn)
        request = ReplayRequest(_range(T0, T0 + 4 * MINUTE), "recompute", config_version=2)
        results, _ = _replay(conn, store, request)
    assert [r["opportunity_key"] for r in results] == keys[:4]
    for result in results:
        assert result["changes"]["config_version"] == {"archive": 1, "recomputed": 2}
        recomputed = result["recomputed"]
        assert recomputed["closed_at_ms"] == recomputed["opened_at_ms"] + 15
        assert recomputed["counts"] == {"loaded": 1}


def test_a_config_version_the_app_lacks_is_refused(database_url: str, store: ColdStore) -> None:
    _fill(database_url)
    request = ReplayRequest(_range(T0, T0 + MINUTE), "recompute", config_version=7)
    with (
        connect(database_url, autocommit=True) as conn,
        pytest.raises(ValueError, match="app a has no config version 7"),
    ):
        _replay(conn, store, request)


def test_the_cli_replays_a_range_to_parquet_and_jsonl_with_one_hash(
    database_url: str,
    file_store: FileColdStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = _fill(database_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("SUPABASE_DB_URL", raising=False)
    monkeypatch.setenv("COLD_STORAGE_URL", file_store.root.as_uri())
    window = ["--from", "1970-01-01T00:00:00Z", "--to", str(NEXT_DAY_MS), "--mode", "recompute"]

    def replay(*extra: str) -> tuple[int, str]:
        code = main(["replay", *window, *extra])
        err = capsys.readouterr().err
        return code, err.split("result hash: ")[1].strip()

    code, jsonl_hash = replay("--format", "jsonl", "--output", str(tmp_path / "r.jsonl"))
    assert code == 0
    assert hashlib.sha256((tmp_path / "r.jsonl").read_bytes()).hexdigest() == jsonl_hash
    assert replay("--format", "parquet", "--output", str(tmp_path / "r.parquet")) == (0, jsonl_hash)
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column("opportunity_key").to_pylist() == keys[:40]
    lines = "".join(line + "\n" for line in table.column("result_json").to_pylist())
    assert hashlib.sha256(lines.encode()).hexdigest() == jsonl_hash
    changed = [r for r in table.to_pylist() if r["changed_fields"]]
    # Its late impression came after the window: stored, not counted.
    assert [(r["opportunity_key"], r["changed_fields"]) for r in changed] == [
        (keys[0], ["excluded_events"])
    ]

    assert replay("--format", "table") == (0, jsonl_hash)
    with connect(database_url) as conn:
        recorded = conn.execute(
            "SELECT selector, status, records, result_hash, result_location FROM replay_records "
            "ORDER BY id"
        ).fetchall()
    assert [row[1:4] for row in recorded] == [("done", 40, jsonl_hash)] * 3
    assert recorded[0][0] == {"from_ms": 0, "to_ms": NEXT_DAY_MS}
    assert recorded[1][4] == str(tmp_path / "r.parquet")

    refused = (
        ["--from", "0"],
        ["--key", keys[0], "--from", "0", "--to", "1"],
        ["--from", "never", "--to", "1"],
        ["--format", "parquet", "--from", "0", "--to", "1"],
    )
    for bad in refused:
        assert main(["replay", *bad]) == 2


def test_sizing_a_range_over_centuries_never_lists_its_days(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job runner sizes 1970-9999 by the days that hold something, not day by day."""
    listed = Selection.days

    def days_of_a_short_selection(self: Selection) -> list[dt.date]:
        days = listed(self)
        assert len(days) < 1000, "a range was listed day by day"
        return days

    monkeypatch.setattr(Selection, "days", days_of_a_short_selection)
    maximal = Selection.of_range(0, 253_402_214_400_000)  # 1970 .. 9999-12-31
    with connect(database_url) as conn:
        sized = cold.opportunities_per_day(conn, FileColdStore(Path("/nonexistent")), maximal)
    assert sized == {}
    assert list(maximal.chunks(sized)) == []
