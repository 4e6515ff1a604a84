"""Idempotency leases against real processes: a paused private broker, a SIGKILLed gateway.

A keyed request holds a short lease on its key while it waits for the
broker, renewed while it lives. Two faults:

- the gateway serving it is SIGKILLed mid-request: the key must be free
  again within seconds (one lease), and the retry served once;
- its lease lapses while it waits (renewals failed) and a retry takes the
  key over: only one of the two may answer 200.

The private broker fixture (its own port, paused with SIGSTOP) is the one
of ``tests/integration/test_broker_pause.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from integration.test_broker_pause import private_broker  # noqa: F401 (a fixture)
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.settings import Settings
from mediation.sim.processes import free_port, mediation_command, running
from mediation.sim.seed import demo_config, new_app_key, seed_app
from mediation.topics import ensure_topics

pytestmark = pytest.mark.integration


def _body() -> bytes:
    return orjson.dumps({"placement_id": "interstitial_main", "device_id": "lease-device",
                         "ts_ms": int(time.time() * 1000)})  # fmt: skip


def _entry(settings: Settings, app_id: str, key: str) -> Callable[[], bytes | None]:
    """Reads this key's Redis entry (a lease or a stored answer)."""
    direct = redis.Redis.from_url(settings.redis_url)
    name = f"{settings.topic_prefix}idem:{app_id}:{hashlib.sha256(key.encode()).hexdigest()}"

    def read() -> bytes | None:
        value = direct.get(name)
        return value if isinstance(value, bytes) else None

    return read


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)


def _until_served(post: Callable[[], httpx.Response], attempts: int) -> list[httpx.Response]:
    """Retry as the SDK does (after Retry-After) until a 200, at most ``attempts`` times."""
    answers = []
    for _attempt in range(attempts):
        answer = post()
        answers.append(answer)
        if answer.status_code == 200:
            break
        assert answer.status_code in (409, 503), answer.text
        time.sleep(float(answer.headers["retry-after"]))
    return answers


def test_a_key_whose_gateway_died_mid_request_is_free_again_within_seconds(
    settings: Settings,
    child_env: dict[str, str],
    private_broker: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    bootstrap, broker_pid = private_broker.split("|")
    ensure_topics(bootstrap, settings.topics.all(), partitions=2)
    app_key = new_app_key()
    seed_app(settings.database_url, "crash", demo_config(), app_key)
    idem_key = f"idem-{uuid.uuid4().hex}"
    keyed = {"X-App-Key": app_key, "Idempotency-Key": idem_key}
    entry = _entry(settings, "crash", idem_key)
    body = _body()  # the SDK's retries resend the same bytes
    # The doomed gateway waits on the paused private broker for as long as it
    # takes; the spare one (the shared broker) serves the SDK's retries.
    doomed_env = child_env | {"KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                              "MEDIATION_PRODUCE_TIMEOUT_MS": "60000"}  # fmt: skip
    doomed_port, spare_port = free_port(), free_port()
    serve = ("api", "--host", "127.0.0.1", "--port")
    doomed_argv = mediation_command(*serve, str(doomed_port))
    spare_argv = mediation_command(*serve, str(spare_port))
    with (
        running("doomed gateway", doomed_argv, doomed_env, tmp_path / "doomed.log") as doomed,
        running("spare gateway", spare_argv, child_env, tmp_path / "spare.log") as spare,
    ):
        doomed_url, spare_url = f"http://127.0.0.1:{doomed_port}", f"http://127.0.0.1:{spare_port}"
        doomed.wait_http(f"{doomed_url}/readyz")
        spare.wait_http(f"{spare_url}/readyz")
        # A fresh idempotent producer needs a moment to register with the broker.
        warm = _until_served(_poster(doomed_url, _body(), {"X-App-Key": app_key}), attempts=20)
        assert warm[-1].status_code == 200

        os.kill(int(broker_pid), signal.SIGSTOP)
        try:
            doomed_post = _poster(doomed_url, body, keyed)
            waiting = threading.Thread(target=lambda: _swallow(doomed_post), daemon=True)
            waiting.start()
            _wait_for(lambda: entry() is not None, "the doomed request's lease")
            doomed.stop(first_signal=signal.SIGKILL)  # mid-request: no release, no renewal
        finally:
            os.kill(int(broker_pid), signal.SIGCONT)
        waiting.join(timeout=30)

        # A few seconds' worth of retries (the lease is 3 s), not the old 30 s.
        answers = _until_served(_poster(spare_url, body, keyed), attempts=8)
        again = _poster(spare_url, body, keyed)()

    served = answers[-1]
    assert served.status_code == 200, [(a.status_code, a.text) for a in answers]
    assert again.status_code == 200 and again.content == served.content  # served once
    assert again.headers["idempotent-replayed"] == "true"


def _poster(base_url: str, body: bytes, headers: dict[str, str]) -> Callable[[], httpx.Response]:
    def post() -> httpx.Response:
        return httpx.post(f"{base_url}/v1/requests", content=body, headers=headers, timeout=60)

    return post


def _swallow(post: Callable[[], httpx.Response]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # its connection dies with its gateway
        post()


def test_a_request_that_lost_its_lease_while_waiting_is_not_served_twice(
    settings: Settings,
    private_broker: str,  # noqa: F811
) -> None:
    """Request A waits on the paused broker; its lease lapses (as when Redis stalled and
    renewals failed) and retry B takes the key over. Both are confirmed when the broker
    resumes: one answers 200, the other 503 + Retry-After, and the next retry replays
    the one 200."""
    bootstrap, broker_pid = private_broker.split("|")
    paused = replace(settings, kafka_bootstrap_servers=bootstrap, produce_timeout_ms=30_000)
    ensure_topics(bootstrap, paused.topics.all(), partitions=2)
    app_key = new_app_key()
    seed_app(settings.database_url, "lapsed", demo_config(), app_key)
    idem_key = f"idem-{uuid.uuid4().hex}"
    keyed = {"X-App-Key": app_key, "Idempotency-Key": idem_key}
    entry = _entry(settings, "lapsed", idem_key)
    direct = redis.Redis.from_url(settings.redis_url)
    body = _body()
    answers: dict[str, httpx.Response] = {}

    with TestClient(create_app(paused)) as client:
        warm = _until_served(
            lambda: client.post("/v1/requests", content=body, headers={"X-App-Key": app_key}),
            attempts=20,
        )
        assert warm[-1].status_code == 200

        def post(name: str) -> None:
            answers[name] = client.post("/v1/requests", content=body, headers=keyed)

        os.kill(int(broker_pid), signal.SIGSTOP)
        try:
            first = threading.Thread(target=post, args=("first",))
            first.start()
            _wait_for(lambda: entry() is not None, "the first request's lease")
            first_lease = entry()
            for name in direct.scan_iter(f"{settings.topic_prefix}idem:lapsed:*"):
                direct.delete(name)  # the lease lapsed
            second = threading.Thread(target=post, args=("second",))
            second.start()
            _wait_for(lambda: entry() not in (None, first_lease), "the retry's lease")
        finally:
            os.kill(int(broker_pid), signal.SIGCONT)
        first.join(timeout=60)
        second.join(timeout=60)
        replay = client.post("/v1/requests", content=body, headers=keyed)
    direct.close()

    statuses = sorted(a.status_code for a in answers.values())
    assert statuses == [200, 503], [a.text for a in answers.values()]
    served = next(a for a in answers.values() if a.status_code == 200)
    refused = next(a for a in answers.values() if a.status_code == 503)
    assert refused.json()["error"]["code"] == "idempotency_unavailable"
    assert refused.headers["retry-after"] == "1"
    assert replay.status_code == 200 and replay.content == served.content
