"""``mediation status`` reads the worker processes' /metrics and says how far behind they are."""

from __future__ import annotations

import pytest

from dataflows.metrics import WorkerMetrics
from mediation.cli import main
from mediation.processes import free_port


def test_status_shows_progress_state_and_partition_lag(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    metrics = WorkerMetrics(
        lambda: 0,
        positions=lambda: {("p.events.v1", 0): 90, ("p.events.v1", 1): 10},
        highs=lambda: {("p.events.v1", 0): 100, ("p.events.v1", 1): 10},
        batches_in_flight=lambda: 3,
    )
    metrics.observe_messages(["p.events.v1"])
    metrics.state.open = 7
    metrics.serve(port)  # loopback
    down = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there

    code = main(
        ["status", "--worker-metrics", f"http://127.0.0.1:{port}/metrics", "--worker-metrics", down]
    )

    out = capsys.readouterr().out
    assert code == 1  # one process is unreachable
    assert "unreachable" in out
    worker_line = next(line for line in out.splitlines() if f":{port}/" in line and " up " in line)
    assert worker_line.split()[2:4] == ["1", "0"]  # messages read, archives
    assert " 7 " in worker_line  # open opportunities
    assert " 3 " in worker_line  # input batches still on their way to the closing step
    lag = [line.split() for line in out.splitlines() if line.startswith("p.events.v1")]
    assert [row[:3] for row in lag] == [["p.events.v1", "0", "10"], ["p.events.v1", "1", "0"]]
