"""Scaling out: two workers in one process, or two processes, give what one worker gives.

The same fixed input (written straight to Kafka, with resends) is closed by
``mediation worker -w 2`` and by a two-process cluster (``-i 0/1 -a``);
Postgres must then hold exactly what the rules compute from the inputs,
which is also what a single worker writes (the crash drills run one):
every row once, one archive per opportunity, no dead letters.

The input is a backlog written *before* the workers start: the hard case
for several processes, where one could close a key before another has read
its events; they close on the cluster's slowest watermark
(``dataflows/cluster_clock.py``).
"""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
from worker_inputs import WORKER_ENV, assert_stored_exactly, count_rows, dataset, produce

from mediation.processes import free_port, mediation_command, running
from mediation.settings import Settings
from storage.db import connect

pytestmark = pytest.mark.integration

OPPORTUNITIES = 200


def _two_free_ports() -> int:
    """A port P with P + 1 free too (process i serves /metrics on P + i)."""
    for _attempt in range(50):
        port = free_port()
        with contextlib.suppress(OSError), socket.socket() as probe:
            probe.bind(("127.0.0.1", port + 1))
            return port
    raise RuntimeError("no two consecutive free ports")


@pytest.mark.parametrize("layout", ["one process, -w 2", "two processes, -w 1 each"])
def test_scaled_out_workers_store_what_one_worker_stores(
    settings: Settings, child_env: dict[str, str], layout: str
) -> None:
    data = dataset(int(time.time() * 1000), OPPORTUNITIES, 20, seed=3)
    produce(settings, data)
    env = {**child_env, **WORKER_ENV}
    logs = settings.data_dir / "logs"
    metrics_port = _two_free_ports()
    if layout.startswith("one"):
        commands = [mediation_command("worker", "-w", "2", "--metrics-port", str(metrics_port))]
    else:
        addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
        commands = [
            mediation_command(
                "worker",
                "-w",
                "1",
                "-i",
                str(i),
                "-a",
                addresses,
                "--metrics-port",
                str(metrics_port),
            )
            for i in range(2)
        ]
    with contextlib.ExitStack() as stack:
        workers = [
            stack.enter_context(running(f"worker-{i}", argv, env, logs / f"worker-{i}.log"))
            for i, argv in enumerate(commands)
        ]
        for i, worker in enumerate(workers):
            worker.wait_http(f"http://127.0.0.1:{metrics_port + i}/metrics", timeout_s=60)
        with connect(settings.database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 90
            while (
                time.monotonic() < deadline and count_rows(conn, "archive_records") < OPPORTUNITIES
            ):
                for worker in workers:
                    assert worker.alive(), worker.tail()
                time.sleep(0.5)
            time.sleep(2)  # anything still to come (a double) would land by now
            assert_stored_exactly(conn, data)
