"""Helpers shared by the benchmark scripts: machine facts, medians, tables."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from mediation.sim.devstack import broker_command, wait_port
from mediation.sim.processes import ChildProcess, free_port, running

if TYPE_CHECKING:
    from storage.cold import ColdStore

__all__ = [
    "cpu_seconds",
    "current_rss_mib",
    "fresh_database",
    "machine",
    "median",
    "peak_rss_mib",
    "private_broker",
    "py_spy",
]


def machine() -> dict[str, object]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib(pid: int) -> float:
    """Peak resident set size (VmHWM) of a live process, in MiB."""
    return _status_mib(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def current_rss_mib(pid: int) -> float:
    """Resident set size now (VmRSS) of a live process, in MiB."""
    return _status_mib(pid, "VmRSS")


@contextlib.contextmanager
def private_broker(directory: Path) -> Iterator[tuple[str, ChildProcess]]:
    """A private, empty Kafka-wire broker on a free loopback port: (bootstrap, process).

    The local broker keeps everything in memory, and one already holding
    gigabytes measures slower; each benchmark starts from an empty one.
    """
    port = free_port()
    log = directory / "broker.log"
    with running("broker", broker_command("127.0.0.1", port), dict(os.environ), log) as broker:
        wait_port("bench broker", "127.0.0.1", port, 20, log)
        yield f"127.0.0.1:{port}", broker


@contextlib.contextmanager
def py_spy(pid: int, out: Path, *, gil_only: bool = False) -> Iterator[None]:
    """Sample ``pid`` with py-spy while the block runs; then print the hottest frames.

    ``gil_only`` counts only samples of threads holding the GIL: where the
    Python CPU time goes, without idle threads waiting on IO or in Rust.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw"]
    # --nonblocking: never pause the target (pausing it slows it several-fold).
    command += ["--rate", "100", "--nonblocking", "-o", str(out), "-p", str(pid)]
    if gil_only:
        command.append("--gil")
    sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        sampler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        sampler.wait(timeout=60)
    _print_hottest(out)


def _print_hottest(out: Path) -> None:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines() if out.exists() else ():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(
        f"\nprofile {out.name}: {total} samples; hottest frames (own %, inclusive %)",
        file=sys.stderr,
    )
    for frame, count in own.most_common(25):
        print(
            f"  {100 * count / total:5.1f}  {100 * inclusive[frame] / total:5.1f}  {frame[:110]}",
            file=sys.stderr,
        )


@contextlib.contextmanager
def fresh_database(base_url: str) -> Iterator[str]:
    """A new migrated database beside ``base_url``'s, dropped afterwards."""
    from storage.migrate import migrate

    name = f"mediation_bench_{uuid.uuid4().hex[:8]}"
    admin = urlsplit(base_url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlsplit(base_url)._replace(path=f"/{name}").geturl()
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def bench_store(s3: bool, bucket: str, scratch: str, endpoint_url: str | None) -> ColdStore:
    """A cold store for a bench: a fresh prefix on the local S3 server, or a scratch directory."""
    from storage.cold import S3ColdStore, open_cold_store

    if not s3:
        return open_cold_store(Path(scratch, "cold").as_uri())
    store = open_cold_store(
        f"s3://{bucket}/{uuid.uuid4().hex[:8]}", endpoint_url or "http://127.0.0.1:9000"
    )
    assert isinstance(store, S3ColdStore)
    store.ensure_bucket()
    return store
