"""The replay API: admin only, small selections inline, large ones as jobs, throttled."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from builders import T0
from starlette.testclient import TestClient
from tiering_data import DAY, fill_day

from gateway import replay_api
from gateway.app import create_app
from mediation.rules.replay import ReplayRequest, Selection
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app
from replay import cold
from replay.digest import result_hash
from replay.jobs import claim, enqueue, job_state, output_key, release, serve_jobs
from storage.cold import FileColdStore, open_cold_store
from storage.db import connect
from storage.tier_job import run_tiering

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
HOUR = {"from": T0, "to": T0 + 3_600_000}


@pytest.fixture
def replay_settings(settings: Settings, tmp_path: object) -> Settings:
    return replace(settings, admin_token=TOKEN, replay_requests_per_s=50)


@pytest.fixture
def keys(replay_settings: Settings) -> list[str]:
    return fill_day(replay_settings.database_url, 12, step_ms=60_000, apps=("a", "b"))


@pytest.fixture
def client(replay_settings: Settings, keys: list[str]) -> Iterator[TestClient]:
    with TestClient(create_app(replay_settings)) as test_client:
        yield test_client


def test_replay_needs_the_admin_token_not_an_sdk_key(
    client: TestClient, replay_settings: Settings, keys: list[str]
) -> None:
    sdk_key = new_app_key()
    seed_app(replay_settings.database_url, "a", demo_config(), sdk_key)
    for headers in ({}, {"X-App-Key": sdk_key}, {"Authorization": f"Bearer {sdk_key}"}):
        response = client.post("/v1/replay", json={"opportunity_key": keys[0]}, headers=headers)
        assert response.status_code == 401, headers
        assert client.get("/v1/replay/1", headers=headers).status_code == 401


def test_a_small_selection_is_answered_inline_and_recorded(
    client: TestClient, keys: list[str]
) -> None:
    response = client.post(
        "/v1/replay", json={**HOUR, "app_id": "b", "mode": "recompute"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [r["opportunity_key"] for r in answer["results"]] == keys[1::2]
    assert answer["result_hash"] == result_hash(answer["results"])
    assert answer["summary"]["records"] == 6
    recorded = client.get(f"/v1/replay/{answer['replay_id']}", headers=ADMIN).json()
    assert recorded["status"] == "done"
    assert recorded["selector"] == {"from_ms": T0, "to_ms": T0 + 3_600_000, "app_id": "b"}
    assert recorded["result_hash"] == answer["result_hash"]
    by_key = client.post("/v1/replay", json={"opportunity_keys": keys[:2]}, headers=ADMIN)
    assert [r["inputs_hash_matches"] for r in by_key.json()["results"]] == [True, True]


def test_bad_requests_say_what_is_wrong(client: TestClient, keys: list[str]) -> None:
    cases = {
        ("invalid_replay_request", "not both"): {"opportunity_key": keys[0], **HOUR},
        ("invalid_replay_request", "from must be"): {"from": "soon", "to": 5},
        ("invalid_replay_request", "unknown fields"): {"opportunity_key": keys[0], "x": 1},
        ("invalid_replay_request", "format must be"): {**HOUR, "format": "csv"},
        ("invalid_replay_request", "has no config version 9"): {
            **HOUR,
            "mode": "recompute",
            "config_version": 9,
        },
    }
    for (code, message), body in cases.items():
        response = client.post("/v1/replay", json=body, headers=ADMIN)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == code
        assert message in response.json()["error"]["message"]
    assert client.post("/v1/replay", content=b"[1]", headers=ADMIN).status_code == 400
    assert client.get("/v1/replay/999999", headers=ADMIN).status_code == 404
    assert client.get("/v1/replay/nope", headers=ADMIN).status_code == 404


def test_a_large_range_runs_as_a_job_whose_result_lands_in_cold_storage(
    client: TestClient, replay_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_api, "INLINE_MAX", 5)
    inline = client.post("/v1/replay", json={**HOUR, "mode": "recompute"}, headers=ADMIN)
    monkeypatch.setattr(replay_api, "INLINE_MAX", 0)
    for output_format in ("jsonl", "parquet"):
        body = {**HOUR, "mode": "recompute", "format": output_format}
        response = client.post("/v1/replay", json=body, headers=ADMIN)
        assert response.status_code == 202, response.text
        assert response.headers["location"] == f"/v1/replay/{response.json()['replay_id']}"
    assert inline.status_code == 202  # 12 opportunities > 5
    store = open_cold_store(replay_settings.cold_storage_url)
    assert serve_jobs(replay_settings.database_url, store, once=True) == 3
    states = [
        client.get(f"/v1/replay/{n}", headers=ADMIN).json()
        for n in (inline.json()["replay_id"], response.json()["replay_id"])
    ]
    assert {state["status"] for state in states} == {"done"}
    assert states[0]["result_hash"] == states[1]["result_hash"]  # the format does not matter
    assert states[0]["records"] == 12
    assert isinstance(store, FileColdStore)
    key = output_key(states[0]["replay_id"], "jsonl")
    assert key == f"_replays/{states[0]['replay_id']}.jsonl"
    jsonl = store.get_bytes(key)
    assert hashlib.sha256(jsonl).hexdigest() == states[0]["result_hash"]
    assert states[0]["result_location"] == store.location(key)
    assert states[1]["result_location"].endswith(".parquet")


def test_replay_requests_are_throttled_and_the_job_queue_is_bounded(
    replay_settings: Settings, keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(create_app(replace(replay_settings, replay_requests_per_s=1))) as client:
        answers = [
            client.post("/v1/replay", json={"opportunity_key": keys[0]}, headers=ADMIN)
            for _ in range(5)
        ]
    refused = [a for a in answers if a.status_code == 429]
    assert refused and refused[0].json()["error"]["code"] == "replay_throttled"
    assert refused[0].headers["retry-after"] == "1"

    monkeypatch.setattr(replay_api, "INLINE_MAX", 0)
    monkeypatch.setattr(replay_api, "MAX_OPEN_JOBS", 1)
    with TestClient(create_app(replay_settings)) as client:
        first = client.post("/v1/replay", json=HOUR, headers=ADMIN)
        second = client.post("/v1/replay", json=HOUR, headers=ADMIN)
    assert first.status_code == 202
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "replay_queue_full"


def test_a_job_whose_runner_died_or_stopped_is_taken_up_again(
    replay_settings: Settings, keys: list[str]
) -> None:
    request = ReplayRequest(Selection.of_range(T0, T0 + 3_600_000), "snapshot")
    with connect(replay_settings.database_url, autocommit=True) as conn:
        replay_id = enqueue(conn, request, "test", "jsonl")
        job = claim(conn)
        assert job is not None and job.replay_id == replay_id and job.request == request
        assert claim(conn) is None  # leased
        # Its runner died: the lease runs out and the job is claimed again.
        conn.execute(
            "UPDATE replay_records SET lease_until = now() - interval '1 second' WHERE id = %s",
            (replay_id,),
        )
        again = claim(conn)
        assert again is not None and again.replay_id == replay_id
        release(conn, replay_id)  # a runner stopping gives it back
        state = job_state(conn, replay_id)
        assert state is not None and state["status"] == "queued"
        store = open_cold_store(replay_settings.cold_storage_url)
        assert serve_jobs(replay_settings.database_url, store, once=True) == 1
        state = job_state(conn, replay_id)
        assert state is not None and state["status"] == "done" and state["records"] == 12
        assert dt.datetime.fromisoformat(state["finished_at"])


def test_an_unreadable_cold_store_is_a_503_and_the_replay_is_recorded_failed(
    replay_settings: Settings, keys: list[str], tmp_path: Path
) -> None:
    store = open_cold_store(replay_settings.cold_storage_url)
    with connect(replay_settings.database_url, autocommit=True) as conn:
        run_tiering(conn, store, DAY + dt.timedelta(days=31))
    elsewhere = replace(replay_settings, cold_storage_url=(tmp_path / "empty").as_uri())
    with TestClient(create_app(elsewhere)) as client:
        response = client.post("/v1/replay", json={"opportunity_key": keys[0]}, headers=ADMIN)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "cold_storage_unavailable"
    with connect(replay_settings.database_url) as conn:
        row = conn.execute(
            "SELECT status, error FROM replay_records ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row is not None and row[0] == "failed" and "no manifest" in row[1]


MAXIMAL = {"from": "1970-01-01T00:00:00Z", "to": "9999-12-31T00:00:00Z", "mode": "recompute"}


def test_a_maximal_range_is_admitted_and_queued_without_sizing_it_in_the_request(
    replay_settings: Settings, keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sizing 1970-9999 reads the catalog for ~2.9 million days; the request
    # may look at one day at most (the inline probe), the job runner does the rest.
    days_read: list[int] = []
    read = cold.TieredDays.read.__func__  # type: ignore[attr-defined]

    def counting_read(cls: type, conn: object, days: list[dt.date]) -> cold.TieredDays:
        days = list(days)
        days_read.append(len(days))
        return read(cls, conn, days)  # type: ignore[no-any-return]

    monkeypatch.setattr(cold.TieredDays, "read", classmethod(counting_read))
    monkeypatch.setattr(replay_api, "MAX_OPEN_JOBS", 1)
    with TestClient(create_app(replay_settings)) as client:
        first = client.post("/v1/replay", json=MAXIMAL, headers=ADMIN)
        second = client.post("/v1/replay", json=MAXIMAL, headers=ADMIN)
    assert first.status_code == 202, first.text[:200]
    assert first.json()["status"] == "queued"
    assert second.status_code == 429  # the queue is full: refused before any sizing
    assert second.json()["error"]["code"] == "replay_queue_full"
    assert all(n <= 1 for n in days_read), days_read
    with connect(replay_settings.database_url) as conn:
        state = job_state(conn, first.json()["replay_id"])
    assert state is not None and state["status"] == "queued"
    assert state["selector"]["to_ms"] == 253_402_214_400_000


def test_a_range_over_more_than_a_day_is_a_job_and_its_config_version_is_checked_first(
    client: TestClient, replay_settings: Settings
) -> None:
    two_days = {"from": T0 - 86_400_000, "to": T0 + 3_600_000, "mode": "recompute"}
    queued = client.post("/v1/replay", json={**two_days, "app_id": "a"}, headers=ADMIN)
    assert queued.status_code == 202  # 12 opportunities, but sizing two days is the runner's
    refused = client.post(
        "/v1/replay", json={**two_days, "app_id": "a", "config_version": 9}, headers=ADMIN
    )
    assert refused.status_code == 422
    assert "app a has no config version 9" in refused.json()["error"]["message"]
    store = open_cold_store(replay_settings.cold_storage_url)
    assert serve_jobs(replay_settings.database_url, store, once=True) == 1
    state = client.get(f"/v1/replay/{queued.json()['replay_id']}", headers=ADMIN).json()
    assert state["status"] == "done" and state["records"] == 6
