"""``mediation status`` reads the worker processes' /metrics and says how far behind they are."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import start_http_server

from dataflows.metrics import WorkerMetrics
from gateway.metrics import GatewayMetrics
from mediation.cli import main
from mediation.ops.status import WorkerReport, read_gateway, read_triggers, render_triggers
from mediation.settings import Settings
from mediation.sim.processes import free_port


def test_status_shows_progress_state_and_partition_lag(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    metrics = WorkerMetrics(
        lambda: 0,
        positions=lambda: {("p.events.v1", 0): 90, ("p.events.v1", 1): 10},
        highs=lambda: {("p.events.v1", 0): 100, ("p.events.v1", 1): 10},
        owned=(3, 4),
    )
    metrics.observe_messages(["p.events.v1"])
    metrics.state.open = 7
    metrics.serve(port)  # loopback
    down = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there

    code = main(
        ["status", "--worker-metrics", f"http://127.0.0.1:{port}/metrics", "--worker-metrics", down,
         "--window-s", "0"]
    )  # fmt: skip

    out = capsys.readouterr().out
    assert code == 1  # one process is unreachable
    assert "unreachable" in out
    worker_line = next(line for line in out.splitlines() if f":{port}/" in line and " up " in line)
    assert worker_line.split()[2:4] == ["1", "0"]  # messages read, archives
    assert " 7 " in worker_line  # open opportunities
    assert " 3 " in worker_line  # input partitions this process owns
    lag = [line.split() for line in out.splitlines() if line.startswith("p.events.v1")]
    assert [row[:3] for row in lag] == [["p.events.v1", "0", "10"], ["p.events.v1", "1", "0"]]


@pytest.mark.integration
def test_triggers_fire_on_the_windows_latency_ack_ratio_and_worker_lag(
    services: Settings,
) -> None:
    gateway = GatewayMetrics.create()
    port = free_port()
    start_http_server(port, addr="127.0.0.1", registry=gateway.registry)
    for _ in range(50):  # before the window: fast, all ACKed
        gateway.observe_http("/v1/requests", 200, 0.004)
        gateway.event_batches_acked.inc()

    def traffic_during_the_window(_seconds: float) -> None:
        for _ in range(100):
            gateway.observe_http("/v1/requests", 200, 0.45)
        gateway.event_batches_acked.inc(10)
        gateway.event_batches_unconfirmed.inc(1)

    worker = WorkerReport("w", values={"event-time lag s": 420.0})
    states = {
        s.trigger.name: s
        for s in read_triggers(
            [f"http://127.0.0.1:{port}/metrics"],
            [worker],
            services.database_url,
            services.redis_url,
            window_s=0.2,
            sleep=traffic_during_the_window,
        ).states
    }
    p95 = states["sync_p95_latency"]
    assert p95.state == "FIRING" and p95.value is not None and 300 < p95.value <= 500
    assert p95.note == "last 0.2 s"  # the earlier fast requests are not in it
    ack = states["ack_success"]
    assert ack.state == "FIRING" and ack.value == pytest.approx(100 * 10 / 11)
    assert states["consumer_lag"].state == "FIRING"
    assert states["db_cpu"].state in ("ok", "FIRING") and states["db_cpu"].value is not None
    assert states["redis_memory"].value is not None
    text = render_triggers(list(states.values()))
    assert "recommended actions:" in text
    assert "add gateway api processes" in text
    assert "increase worker concurrency" in text


def test_triggers_are_unknown_without_metrics_and_status_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/metrics"
    code = main(["status", "--worker-metrics", nowhere, "--gateway-metrics", nowhere,
                 "--window-s", "0.1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "scaling triggers" in out
    assert "no gateway metrics reachable" in out
    assert f"gateway metrics unreachable: {nowhere}" in out


class _NotMetrics(http.server.BaseHTTPRequestHandler):
    """An HTTP server that is no metrics endpoint: an HTML page, and 404 elsewhere."""

    def do_GET(self) -> None:
        found = self.path == "/"
        body = b"<!doctype html><html><body>hello</body></html>" if found else b"no such page"
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def not_metrics() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotMetrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_url_that_is_not_a_metrics_endpoint_is_reported_not_raised(
    not_metrics: str, capsys: pytest.CaptureFixture[str]
) -> None:
    page, missing = f"{not_metrics}/", f"{not_metrics}/metrics"
    code = main(
        ["status", "--worker-metrics", page, "--worker-metrics", missing, "--window-s", "0"]
    )

    out = capsys.readouterr().out
    assert code == 1
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(not_metrics)}
    assert "not a metrics endpoint: the answer is not Prometheus text" in rows[page]
    assert "not a metrics endpoint: HTTP 404" in rows[missing]
    assert read_gateway(page).error == "not a metrics endpoint: the answer is not Prometheus text"
