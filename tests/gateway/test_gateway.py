"""The gateway in-process (Starlette TestClient) with the real Postgres, Redis and broker."""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.rules.ulid import encode_ulid, ulid_time_ms
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app

pytestmark = pytest.mark.integration


@pytest.fixture
def app_key(settings: Settings) -> str:
    key = new_app_key()
    seed_app(settings.database_url, "demo", demo_config(), key)
    return key


@pytest.fixture
def client(settings: Settings, app_key: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _consume(settings: Settings, topic: str, expected: int) -> list[dict[str, object]]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": "gateway-test",
            "fetch.wait.max.ms": 10,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.kafka_partitions)])
    values: list[dict[str, object]] = []
    deadline = time.monotonic() + 10
    while len(values) < expected and time.monotonic() < deadline:
        values += [orjson.loads(m.value()) for m in consumer.consume(100, 0.2) if not m.error()]
    consumer.close()
    return values


def _request(client: TestClient, app_key: str, **body: object) -> dict[str, object]:
    payload = {
        "placement_id": "interstitial_main",
        "device_id": "device-1",
        "ts_ms": int(time.time() * 1000),
        "context": {"country": "US", "os": "ios"},
    }
    payload.update(body)
    response = client.post("/v1/requests", json=payload, headers={"X-App-Key": app_key})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_sync_request_answers_a_waterfall_and_puts_the_opportunity_on_kafka(
    client: TestClient, app_key: str, settings: Settings
) -> None:
    decision = _request(client, app_key)
    delivery = decision["delivery"]
    assert delivery["status"] == "fill"  # type: ignore[index]
    floors = [entry["floor_micros"] for entry in delivery["waterfall"]]  # type: ignore[index]
    assert floors == sorted(floors, reverse=True) and len(floors) == 3  # depth cap
    key = str(decision["opportunity_key"])
    assert abs(ulid_time_ms(key) - time.time() * 1000) < 60_000
    messages = _consume(settings, settings.topics.opportunities, 1)
    assert [m["opportunity_key"] for m in messages] == [key]
    assert messages[0]["schema"] == "opportunity.v1"


def test_targeting_leaves_no_source_and_answers_no_fill(client: TestClient, app_key: str) -> None:
    decision = _request(client, app_key, placement_id="banner_home", context={"country": "DE"})
    assert decision["delivery"]["status"] == "no_fill"  # type: ignore[index]
    assert decision["delivery"]["waterfall"] == []  # type: ignore[index]


def test_events_batch_accepts_valid_items_and_rejects_bad_ones_per_item(
    client: TestClient, app_key: str, settings: Settings
) -> None:
    key = str(_request(client, app_key)["opportunity_key"])
    sent_at = int(time.time() * 1000) - 60_000  # device clock one minute slow
    batch = {
        "sent_at": sent_at,
        "sdk": "test/1",
        "events": [
            {
                "event_id": "a1",
                "opportunity_key": key,
                "type": "loaded",
                "ts": sent_at - 500,
                "source_id": "net_alpha",
            },
            {"event_id": "a2", "opportunity_key": key, "type": "teleported", "ts": sent_at},
            {"event_id": "a3", "opportunity_key": "nope", "type": "loaded", "ts": sent_at},
            {
                "event_id": "a4",
                "opportunity_key": key,
                "type": "impression",
                "ts": sent_at,
                "revenue_micros": -1,
                "currency": "USD",
            },
        ],
    }
    response = client.post(
        "/v1/events", content=orjson.dumps(batch), headers={"X-App-Key": app_key}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (1, "unknown_type"),
        (2, "invalid_opportunity_key"),
        (3, "invalid_revenue"),
    ]
    [event] = _consume(settings, settings.topics.events, 1)
    assert event["event_id"] == "a1" and event["app_id"] == "demo"
    # server_ts = received_at - (sent_at - ts): the device's minute of skew is gone
    assert event["received_at_ms"] - event["server_ts_ms"] == 500  # type: ignore[operator]


def test_unknown_app_key_is_refused(client: TestClient) -> None:
    response = client.post("/v1/events", content=b"{}", headers={"X-App-Key": "mk_nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unknown_app_key"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[]", 422, "invalid_body"),
        (orjson.dumps({"sent_at": 1, "sdk": "x", "events": [{}]}), 422, "invalid_sent_at"),
        (b"x" * (1024 * 1024 + 1), 413, "body_too_large"),
    ],
)
def test_bad_batches_get_specific_errors(
    client: TestClient, app_key: str, body: bytes, status: int, code: str
) -> None:
    response = client.post("/v1/events", content=body, headers={"X-App-Key": app_key})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_too_many_events_in_one_batch_is_refused(client: TestClient, app_key: str) -> None:
    key = encode_ulid(int(time.time() * 1000), bytes(10))
    events = [
        {
            "event_id": f"e{i}",
            "opportunity_key": key,
            "type": "loaded",
            "ts": int(time.time() * 1000),
        }
        for i in range(501)
    ]
    response = client.post(
        "/v1/events",
        headers={"X-App-Key": app_key},
        content=orjson.dumps({"sent_at": int(time.time() * 1000), "sdk": "x", "events": events}),
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "too_many_events"


def test_config_read_supports_etag_revalidation(client: TestClient, app_key: str) -> None:
    first = client.get("/v1/config", headers={"X-App-Key": app_key})
    assert first.status_code == 200
    assert "interstitial_main" in first.json()["config"]["placements"]
    again = client.get(
        "/v1/config", headers={"X-App-Key": app_key, "If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304


def test_health_readiness_metrics_and_openapi(client: TestClient, app_key: str) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"postgres": True, "redis": True, "kafka": True}
    _request(client, app_key)
    metrics = client.get("/metrics").text
    assert 'mediation_http_requests_total{route="/v1/requests",status="200"}' in metrics
    document = client.get("/openapi.json").json()
    assert {"/v1/requests", "/v1/events", "/v1/config"} <= set(document["paths"])


def test_unknown_placement_is_a_clear_error(client: TestClient, app_key: str) -> None:
    response = client.post(
        "/v1/requests",
        headers={"X-App-Key": app_key},
        json={"placement_id": "nowhere", "device_id": "d", "ts_ms": int(time.time() * 1000)},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_placement"


def _gzip_batch(key: str, count: int) -> bytes:
    now = int(time.time() * 1000)
    events = [
        {"event_id": f"g{i}", "opportunity_key": key, "type": "loaded", "ts": now}
        for i in range(count)
    ]
    return gzip.compress(orjson.dumps({"sent_at": now, "sdk": "gz/1", "events": events}))


def test_gzip_batch_is_accepted(client: TestClient, app_key: str) -> None:
    key = encode_ulid(int(time.time() * 1000), bytes(10))
    response = client.post(
        "/v1/events",
        content=_gzip_batch(key, 3),
        headers={"X-App-Key": app_key, "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 3, "rejected": []}


def test_gzip_bomb_is_refused_at_the_inflated_cap(client: TestClient, app_key: str) -> None:
    bomb = gzip.compress(b"[" + b" " * (64 * 1024 * 1024) + b"]")  # 64 MiB inflated, ~64 KiB sent
    assert len(bomb) < 1024 * 1024
    response = client.post(
        "/v1/events", content=bomb, headers={"X-App-Key": app_key, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize(
    ("encoding", "body", "status", "code"),
    [("br", b"{}", 415, "unsupported_encoding"), ("gzip", b"not gzip", 400, "invalid_gzip")],
)
def test_bad_content_encoding_gets_a_specific_error(
    client: TestClient, app_key: str, encoding: str, body: bytes, status: int, code: str
) -> None:
    response = client.post(
        "/v1/events", content=body, headers={"X-App-Key": app_key, "Content-Encoding": encoding}
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_request_id_is_echoed_or_minted(client: TestClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-Id": "support-1234"}).headers["x-request-id"]
        == "support-1234"
    )
    minted = client.get("/healthz", headers={"X-Request-Id": "bad id!"}).headers["x-request-id"]
    assert len(minted) == 16 and minted != "bad id!"


def test_access_log_is_one_json_line_without_secrets(
    settings: Settings, app_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    caplog.set_level(logging.INFO, logger="mediation.access")
    with TestClient(create_app(replace(settings, access_log=True))) as logged:
        logged.post("/v1/events", content=b"{}", headers={"X-App-Key": app_key})
    lines = [r.getMessage() for r in caplog.records if r.name == "mediation.access"]
    assert lines and app_key not in "".join(lines)
    entry = orjson.loads(lines[-1])
    assert entry["route"] == "/v1/events" and entry["status"] == 422
    assert set(entry) == {"method", "route", "status", "duration_ms", "request_id"}


def test_unexpected_errors_answer_in_the_error_shape_with_a_request_id(
    settings: Settings, app_key: str
) -> None:
    from starlette.routing import Route

    async def boom(_request: object) -> None:
        raise RuntimeError("secret internals")

    app = create_app(settings)
    app.router.routes.append(Route("/boom", boom))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-Id": "trace-me-123"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "trace-me-123"
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret" not in response.text
