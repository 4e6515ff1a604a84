"""The bad-input corpus (``tests/data/bad_input.json``) and generated hostile bodies.

Each case is sent to the real gateway (in-process, real Postgres, Redis and
broker) and must get exactly its expected answer: the status and error code
for a refused request, or per-item rejection codes with the valid events
beside them still accepted. No case may get a 5xx.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from mediation.rules.ulid import encode_ulid

pytestmark = pytest.mark.integration

CORPUS = json.loads((Path(__file__).parent.parent / "data" / "bad_input.json").read_text())
MIB = 1 << 20


@pytest.fixture(scope="module")
def now() -> int:
    return int(time.time() * 1000)


def _fill(text: str, now: int, case: int, admin_token: str = "") -> str:
    return (
        text.replace("{NOW}", str(now))
        .replace("{KEY}", encode_ulid(now - 1_000, bytes([case % 256]) * 10))
        .replace("{ORPHAN}", encode_ulid(now - 2_000, b"\xee" * 10))
        .replace("{ADMIN_TOKEN}", admin_token)
    )


def _post(
    client: TestClient,
    key: str,
    route: str,
    body: bytes,
    headers: dict[str, str],
    method: str = "POST",
) -> Any:
    return client.request(
        method,
        route,
        content=body,
        headers={"X-App-Key": key, "Content-Type": "application/json", **headers},
    )


@pytest.mark.parametrize(
    "index", range(len(CORPUS["cases"])), ids=lambda i: CORPUS["cases"][i]["name"]
)
def test_each_corpus_case_gets_its_answer(
    app_client: tuple[TestClient, str], admin_token: str, now: int, index: int
) -> None:
    client, key = app_client
    case = CORPUS["cases"][index]
    if "body_hex" in case:
        body = bytes.fromhex(case["body_hex"])
    else:
        body = _fill(case["body"], now, index).encode()
    given = case.get("headers", {})
    headers = {name: _fill(value, now, index, admin_token) for name, value in given.items()}
    response = _post(client, key, case["route"], body, headers, case.get("method", "POST"))
    assert response.status_code == case["expect_status"], response.text
    answer = response.json()
    if "expect_code" in case:
        assert answer["error"]["code"] == case["expect_code"], answer
        assert answer["error"]["message"]
    if "expect_rejected" in case:
        assert [item["code"] for item in answer["rejected"]] == case["expect_rejected"]
        assert all(item["message"] for item in answer["rejected"])
        assert answer["accepted"] == case["expect_accepted"]


def _batch(now: int, events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"sdk": "corpus/1", "sent_at": now, "events": events}).encode()


def _event(now: int, event_id: str, **extra: Any) -> dict[str, Any]:
    key = encode_ulid(now - 1_000, b"\x01" * 10)
    return {"event_id": event_id, "opportunity_key": key, "type": "loaded", "ts": now, **extra}


def test_generated_hostile_bodies_are_refused_with_a_reason(
    app_client: tuple[TestClient, str], now: int
) -> None:
    client, key = app_client
    event = json.dumps(_event(now, "d1"))
    deep = event[:-1] + ', "attrs": ' + '{"a": ' * 5_000 + "1" + "}" * 5_000 + "}"
    nested = f'{{"sdk": "corpus/1", "sent_at": {now}, "events": [{deep}]}}'.encode()
    cases = {
        "nesting 5,000 deep": (nested, {}, 400),
        "a body over 1 MiB": (_batch(now, [_event(now, "big", pad="x" * (MIB + 10))]), {}, 413),
        "a gzip bomb (64 MiB of zeros)": (
            gzip.compress(b"0" * (64 * MIB), compresslevel=9),
            {"Content-Encoding": "gzip"},
            413,
        ),
        "501 events": (_batch(now, [_event(now, f"n{i}") for i in range(501)]), {}, 422),
    }
    for name, (body, headers, status) in cases.items():
        response = _post(client, key, "/v1/events", body, headers)
        assert response.status_code == status, (name, response.text[:300])
        assert response.json()["error"]["code"], name

    # Duplicate ids inside one batch: one event (the worker dedups resends;
    # the gateway accepts what is valid).
    duplicated = [_event(now, "same"), _event(now, "same")]
    answer = _post(client, key, "/v1/events", _batch(now, duplicated), {}).json()
    assert answer["accepted"] + len(answer["rejected"]) == 2
    # A valid gzip body is accepted like a plain one.
    zipped = gzip.compress(_batch(now, [_event(now, "gz1")]))
    response = _post(client, key, "/v1/events", zipped, {"Content-Encoding": "gzip"})
    assert response.status_code == 200 and response.json()["accepted"] == 1


def test_the_corpus_covers_what_the_issue_lists() -> None:
    names = " ".join(case["name"] for case in CORPUS["cases"]).lower()
    for topic in ("json", "utf-8", "nan", "infinity", "64 bits", "unknown event type",
                  "missing", "is a number", "2200", "1970", "past retention", "future",
                  "orphan", "attrs with 40 keys", "gzip", "admin config: brotli",
                  "admin degradation: gzip", "replay: brotli", "281474976710655",
                  "superscript"):  # fmt: skip
        assert topic in names, topic
