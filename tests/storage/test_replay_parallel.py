"""Replay across processes: the same bytes as one process, in order; a failing unit stops it all."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from builders import T0
from tiering_data import DAY, fill_day, push_two_config_versions

from mediation.cli import main
from mediation.rules.replay import ReplayRequest, ReplayRequestError, Selection
from mediation.rules.ulid import ulid_day
from mediation.settings import Settings
from mediation.tables import TABLES
from replay.jobs import enqueue, job_state, output_key, serve_jobs
from replay.output import CollectedOutput, JsonlOutput, ParquetOutput
from replay.run import ReplaySources, run_replay
from storage.cold import ColdStore, FileColdStore
from storage.db import connect
from storage.tier_job import run_tiering
from storage.tiering import manifest_key

pytestmark = pytest.mark.integration

MINUTE = 60_000
DAY_MS = 86_400_000
FOUR_DAYS = Selection.of_range(T0, T0 + 4 * DAY_MS)


FOUR_DAY_COUNTS = (40, 25, 30, 10)


def _fill_four_days(database_url: str) -> list[str]:
    """Opportunities a minute apart on DAY and the three days after it; apps a/b."""
    keys = []
    for offset, count in enumerate(FOUR_DAY_COUNTS):
        keys += fill_day(database_url, count, T0 + offset * DAY_MS, step_ms=MINUTE,
                         apps=("a", "b"), placements=("p", "q"))  # fmt: skip
    return keys


def _tier_cold_split_hot(conn: psycopg.Connection, store: ColdStore) -> None:
    """DAY all cold; the next day split (events cold, the rest hot); the last two hot."""
    run_tiering(conn, store, DAY + dt.timedelta(days=2), default_hot_days=0,
                tables=["event_records"])  # fmt: skip
    run_tiering(conn, store, DAY + dt.timedelta(days=1), default_hot_days=0)


def _sources(database_url: str, store: ColdStore, services: Settings) -> ReplaySources:
    return ReplaySources(
        database_url,
        store.url,
        services.aws_endpoint_url or "http://127.0.0.1:9000",
        services.aws_region,
        services.aws_credentials_set,
    )


def _run(
    conn: psycopg.Connection,
    store: ColdStore,
    sources: ReplaySources,
    request: ReplayRequest,
    out: Path,
    jobs: int,
) -> dict[str, Any]:
    """Replay to JSONL and to Parquet with ``jobs`` processes: the bytes, hash, summary, rows."""
    outcome: dict[str, Any] = {}
    for name, output in (("jsonl", JsonlOutput(path=out / f"{jobs}.jsonl")),
                         ("parquet", ParquetOutput(out / f"{jobs}.parquet"))):  # fmt: skip
        replay_id, digest, location = run_replay(
            conn, store, request, output, requested_by="t", chunk_rows=7, jobs=jobs, sources=sources
        )
        assert location is not None
        outcome[name] = Path(location).read_bytes()
        outcome[f"{name} hash"] = digest.hexdigest()
        outcome[f"{name} summary"] = digest.summary()
        outcome[f"{name} record"] = conn.execute(
            "SELECT selector, mode, status, records, result_hash, diff_summary, error "
            "FROM replay_records WHERE id = %s",
            (replay_id,),
        ).fetchone()
    return outcome


@pytest.mark.parametrize("mode", ["snapshot", "recompute"])
def test_two_and_three_processes_write_the_bytes_of_one_over_hot_cold_and_split_days(
    database_url: str, store: ColdStore, services: Settings, tmp_path: Path, mode: str
) -> None:
    keys = _fill_four_days(database_url)
    sources = _sources(database_url, store, services)
    request = ReplayRequest(FOUR_DAYS, mode)
    with connect(database_url, autocommit=True) as conn:
        _tier_cold_split_hot(conn, store)
        one = _run(conn, store, sources, request, tmp_path, jobs=1)
        assert one["jsonl summary"]["records"] == len(keys)
        assert one["jsonl record"][2:5] == ("done", len(keys), one["jsonl hash"])
        assert one["jsonl"].count(b"\n") == len(keys)
        for jobs in (2, 3):
            assert _run(conn, store, sources, request, tmp_path, jobs=jobs) == one


def test_workers_recompute_under_a_named_config_snapshot_as_one_process_does(
    database_url: str, file_store: FileColdStore, services: Settings
) -> None:
    _fill_four_days(database_url)
    sources = _sources(database_url, file_store, services)
    with connect(database_url, autocommit=True) as conn:
        push_two_config_versions(conn)
        request = ReplayRequest(FOUR_DAYS, "recompute", config_version=2)
        answers = []
        for jobs in (1, 2):
            output = CollectedOutput()
            _, digest, _ = run_replay(conn, file_store, request, output, requested_by="t",
                                      chunk_rows=7, jobs=jobs, sources=sources)  # fmt: skip
            answers.append((output.results, digest.hexdigest(), digest.summary()))
    assert answers[1] == answers[0]
    assert answers[0][2]["fields"]["config_version"] == answers[0][2]["records"]


def test_a_failing_unit_fails_the_replay_with_its_error_and_leaves_no_file(
    database_url: str, file_store: FileColdStore, services: Settings, tmp_path: Path
) -> None:
    _fill_four_days(database_url)
    sources = _sources(database_url, file_store, services)
    # No app has config version 7: the workers find out, unit by unit.
    request = ReplayRequest(FOUR_DAYS, "recompute", config_version=7)
    out = tmp_path / "out"
    out.mkdir()
    with connect(database_url, autocommit=True) as conn:
        with pytest.raises(ReplayRequestError, match="app a has no config version 7"):
            output = JsonlOutput(path=out / "r.jsonl")
            run_replay(conn, file_store, request, output, requested_by="t", chunk_rows=7, jobs=2,
                       sources=sources)  # fmt: skip
        recorded = conn.execute("SELECT status, error, result_hash FROM replay_records").fetchall()
    assert recorded == [("failed", "ReplayRequestError: app a has no config version 7", None)]
    assert list(out.iterdir()) == []


def _marked_processes(mark: str) -> list[int]:
    """Live processes whose environment holds ``mark``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours
            continue
        if mark.encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_the_cli_fails_on_a_unit_in_one_line_and_leaves_no_process_behind(
    database_url: str, file_store: FileColdStore, tmp_path: Path
) -> None:
    _fill_four_days(database_url)
    with connect(database_url, autocommit=True) as conn:
        _tier_cold_split_hot(conn, file_store)
    # The cold events of DAY lose their manifest: the unit reading them fails
    # in a worker (sizing the range reads only the opportunities' manifests).
    (file_store.root / manifest_key("event_records", DAY)).unlink()
    out = tmp_path / "out"
    out.mkdir()
    mark = f"MEDIATION_REPLAY_TEST_MARK={uuid.uuid4().hex}"
    env = {**os.environ, "DATABASE_URL": database_url, "COLD_STORAGE_URL": file_store.url}
    env.pop("SUPABASE_DB_URL", None)
    env[mark.split("=", maxsplit=1)[0]] = mark.split("=")[1]
    window = ["--from", str(T0), "--to", str(T0 + 4 * DAY_MS), "--mode", "recompute"]
    command = [sys.executable, "-c", "from mediation.cli import main; raise SystemExit(main())",
               "replay", *window, "--format", "jsonl", "--output", str(out / "r.jsonl"),
               "--jobs", "2"]  # fmt: skip
    done = subprocess.run(
        command, check=False, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("mediation replay: cold storage: event_records"), done.stderr
    assert "no manifest" in done.stderr
    assert list(out.iterdir()) == []
    # The workers were joined before the command returned; the forkserver
    # they came from leaves when the command's process is gone.
    deadline = time.monotonic() + 30
    while _marked_processes(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _marked_processes(mark) == []


def test_the_cli_refuses_jobs_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "-2"):
        assert main(["replay", "--from", "0", "--to", "1", "--jobs", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--jobs must be at least 1" in err, err
    assert main(["replay-jobs", "--once", "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_the_cli_replays_across_processes_with_the_bytes_of_one(
    database_url: str,
    file_store: FileColdStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = _fill_four_days(database_url)
    with connect(database_url, autocommit=True) as conn:
        _tier_cold_split_hot(conn, file_store)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("SUPABASE_DB_URL", raising=False)
    monkeypatch.setenv("COLD_STORAGE_URL", file_store.url)
    window = ["--from", str(T0), "--to", str(T0 + 4 * DAY_MS), "--mode", "recompute"]
    written = {}
    for jobs in ("1", "2", "99"):
        path = tmp_path / f"{jobs}.jsonl"
        code = main(["replay", *window, "--format", "jsonl", "--output", str(path), "--jobs", jobs])
        err = capsys.readouterr().err
        assert code == 0, err
        written[jobs] = (path.read_bytes(), err.split("result hash: ")[1].strip())
        # More processes than CPUs: capped, and said so.
        assert ("capped at the" in err) == (jobs == "99")
    assert written["2"] == written["1"] == written["99"]
    assert written["1"][0].count(b"\n") == len(keys)


def test_the_job_runner_replays_each_job_across_processes_with_the_bytes_of_one(
    database_url: str, file_store: FileColdStore, services: Settings
) -> None:
    keys = _fill_four_days(database_url)
    sources = _sources(database_url, file_store, services)
    request = ReplayRequest(FOUR_DAYS, "recompute")
    stored: dict[int, list[bytes]] = {}
    with connect(database_url, autocommit=True) as conn:
        _tier_cold_split_hot(conn, file_store)
        for jobs in (1, 2):
            ids = [enqueue(conn, request, "t", fmt) for fmt in ("jsonl", "parquet")]
            assert serve_jobs(database_url, file_store, once=True, jobs=jobs, sources=sources) == 2
            states = [job_state(conn, replay_id) for replay_id in ids]
            assert [state and state["status"] for state in states] == ["done", "done"]
            keys_of_outputs = [
                output_key(replay_id, fmt)
                for replay_id, fmt in zip(ids, ("jsonl", "parquet"), strict=True)
            ]
            assert [state and state["result_location"] for state in states] == [
                file_store.location(key) for key in keys_of_outputs
            ]
            stored[jobs] = [file_store.get_bytes(key) for key in keys_of_outputs]
    assert stored[2] == stored[1]
    # The Parquet's appended columns over a cold day, a split one and hot ones.
    table = pq.read_table(pa.BufferReader(stored[1][1]))
    assert table.column("opportunity_key").to_pylist() == keys
    assert table.select(["app_id", "placement_id", "day", "currency"]).to_pylist() == [
        {"app_id": app, "placement_id": placement, "day": ulid_day(key), "currency": None}
        for key, app, placement in zip(keys, *_apps_and_placements(), strict=True)
    ]


def _apps_and_placements() -> tuple[list[str], list[str]]:
    """The app and placement of each opportunity ``_fill_four_days`` writes, in key order."""
    apps, placements = [], []
    for count in FOUR_DAY_COUNTS:
        apps += [("a", "b")[n % 2] for n in range(count)]
        placements += [("p", "q")[n % 2] for n in range(count)]
    return apps, placements


def test_job_outputs_stay_out_of_every_glob_and_dataset_of_the_cold_tables(
    database_url: str, file_store: FileColdStore
) -> None:
    _fill_four_days(database_url)
    with connect(database_url, autocommit=True) as conn:
        _tier_cold_split_hot(conn, file_store)
        tiered = sorted(str(path) for path in file_store.root.glob("*/day=*/*.parquet"))
        for fmt in ("jsonl", "parquet"):
            enqueue(conn, ReplayRequest(FOUR_DAYS, "recompute"), "t", fmt)
        assert serve_jobs(database_url, file_store, once=True) == 2
    root = file_store.root
    outputs = sorted(path.relative_to(root).as_posix() for path in root.glob("_replays/*"))
    assert [Path(name).suffix for name in outputs] == [".jsonl", ".parquet"]
    # The globs an analyst writes over the tables' days find the tables' files only.
    for pattern in ("*/day=*/*.parquet", "*/*/*.parquet"):
        found = sorted(str(path) for path in root.glob(pattern))
        assert found == tiered, pattern
    # The root's directories are the tables, and the _-prefixed trees beside them.
    tables = {path.name for path in root.iterdir() if not path.name.startswith(("_", "."))}
    assert tables <= set(TABLES), tables
    # Dataset discovery of the whole root (pyarrow, pandas) skips the outputs.
    discovered = ds.dataset(str(root), format="parquet", partitioning="hive").files
    assert sorted(discovered) == tiered
