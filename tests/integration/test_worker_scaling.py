"""Scaling out: N worker processes, each owning its partitions, store what one process stores.

Every test writes a fixed input straight to Kafka (with resends), on topics
of six partitions, and runs ``mediation worker --member i/N`` processes:
independent dataflows that exchange nothing and share no clock. Postgres
must then hold exactly what the rules compute from the inputs, which is
what one process writes: every row once, one archive per opportunity, no
dead letters, no late events.

- a backlog written before the workers start, closed by 1, 2 and 3 members;
- SIGKILL one of two members while input flows: the other keeps archiving
  its own partitions while the first is down; the restarted one resumes
  from its recovery store;
- rescaling from 2 to 3 members while input flows: the two stop cleanly,
  three start with stores of their new layout, every partition from its
  safe restart offset (``worker_positions``).
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from worker_inputs import (
    WORKER_ENV,
    Dataset,
    assert_stored_exactly,
    count_rows,
    dataset,
    produce,
)

from mediation.settings import Settings
from mediation.sim.processes import ChildProcess, free_port, mediation_command
from mediation.topics import ensure_topics
from storage.db import connect

pytestmark = pytest.mark.integration

PARTITIONS = 6


@pytest.fixture
def six(settings: Settings) -> Settings:
    """This test's settings on input topics of six partitions."""
    wide = replace(settings, topic_prefix=f"{settings.topic_prefix}six.", kafka_partitions=6)
    ensure_topics(wide.kafka_bootstrap_servers, wide.topics.all(), partitions=PARTITIONS)
    return wide


def _free_ports(count: int) -> int:
    """A port P with P .. P + count - 1 free (member i serves /metrics on P + i)."""
    for _attempt in range(50):
        port = free_port()
        with contextlib.ExitStack() as probes:
            try:
                for offset in range(1, count):
                    probe = probes.enter_context(socket.socket())
                    probe.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no {count} consecutive free ports")


class _Members:
    """Worker processes of one test, started and stopped by pid."""

    def __init__(self, settings: Settings, recovery: Path | None = None):
        self._env = {**settings.child_env(), **WORKER_ENV}
        self._logs = settings.data_dir / "logs"
        self._recovery = recovery
        self.children: dict[str, ChildProcess] = {}
        self.ports: dict[str, int] = {}

    def start(self, member: str, port: int) -> ChildProcess:
        argv = ["worker", "--member", member, "--metrics-port", str(port)]
        if self._recovery is not None:
            argv += ["-r", str(self._recovery), "-s", "1"]
        name = f"worker-{member.replace('/', '-of-')}"
        index = int(member.split("/", maxsplit=1)[0])
        child = ChildProcess(name, mediation_command(*argv), self._env, self._logs / f"{name}.log")
        self.children[member] = child
        self.ports[member] = port + index
        child.wait_http(f"http://127.0.0.1:{port + index}/metrics", timeout_s=60)
        return child

    def archives(self, member: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.ports[member]}/metrics", timeout=5).text
        match = re.search(r"^mediation_worker_archives_total (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def check_alive(self) -> None:
        for child in self.children.values():
            if child.alive() is False and child.proc.returncode not in (-signal.SIGKILL, 0):
                raise AssertionError(f"{child.name} died:\n{child.tail()}")

    def stop_all(self, first_signal: int = signal.SIGTERM) -> None:
        for child in self.children.values():
            child.stop(first_signal)


@contextlib.contextmanager
def _members(settings: Settings, recovery: Path | None = None) -> Iterator[_Members]:
    members = _Members(settings, recovery)
    try:
        yield members
    finally:
        members.stop_all()


def _wait_for_archives(settings: Settings, expected: int, members: _Members) -> None:
    with connect(settings.database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and count_rows(conn, "archive_records") < expected:
            members.check_alive()
            time.sleep(0.5)


def _assert_exactly(settings: Settings, data: Dataset) -> None:
    time.sleep(2)  # anything still to come (a double) would land by now
    with connect(settings.database_url, autocommit=True) as conn:
        assert_stored_exactly(conn, data)
        late = conn.execute("SELECT count(*) FROM event_records WHERE late").fetchone()
        assert late == (0,)


class _Traffic:
    """Input written while the workers run: ``rounds`` slices of opportunities, ~0.2 s apart."""

    def __init__(self, settings: Settings, rounds: int, per_round: int, seed: int):
        now = int(time.time() * 1000)
        self._slices = [
            dataset(now + 200 * i, per_round, 1, seed=seed * 1_000 + i) for i in range(rounds)
        ]
        self._settings = settings
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.failure: BaseException | None = None

    @property
    def data(self) -> Dataset:
        return Dataset(
            [o for part in self._slices for o in part.opportunities],
            [e for part in self._slices for e in part.events],
        )

    def _run(self) -> None:
        try:
            for part in self._slices:
                produce(self._settings, part)
                time.sleep(0.2)
        except BaseException as exc:  # reported by join()
            self.failure = exc

    def start(self) -> _Traffic:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(120)
        assert self.failure is None, self.failure


@pytest.mark.parametrize("count", [1, 2, 3])
def test_members_store_exactly_what_the_rules_compute_from_a_backlog(
    six: Settings, count: int
) -> None:
    data = dataset(int(time.time() * 1000), 240, 20, seed=3)
    produce(six, data)  # a backlog: written before any worker starts
    port = _free_ports(count)
    with _members(six) as members:
        for index in range(count):
            members.start(f"{index}/{count}", port)
        _wait_for_archives(six, len(data.opportunities), members)
        _assert_exactly(six, data)
        if count > 1:  # each did its share: nobody waited on anybody
            assert all(members.archives(f"{i}/{count}") > 0 for i in range(count))


def test_one_member_killed_the_other_keeps_closing_its_partitions(
    six: Settings, tmp_path: Path
) -> None:
    backlog = dataset(int(time.time() * 1000) - 5_000, 120, 20, seed=5)
    produce(six, backlog)
    port = _free_ports(2)
    with _members(six, tmp_path / "recovery") as members:
        members.start("0/2", port)
        victim = members.start("1/2", port)
        traffic = _Traffic(six, rounds=60, per_round=6, seed=7).start()
        deadline = time.monotonic() + 60
        while members.archives("1/2") == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        victim.stop(signal.SIGKILL)  # mid-stream: its partitions stop being read
        survivor_before = members.archives("0/2")
        time.sleep(4)
        # The other member does not wait for the dead one: its archives grow.
        assert members.archives("0/2") > survivor_before, members.children["0/2"].tail()
        members.start("1/2", port)  # resumes from its recovery store
        traffic.join()
        data = Dataset(
            backlog.opportunities + traffic.data.opportunities,
            backlog.events + traffic.data.events,
        )
        _wait_for_archives(six, len(data.opportunities), members)
        _assert_exactly(six, data)


def test_rescaling_from_two_to_three_members_loses_and_doubles_nothing(
    six: Settings, tmp_path: Path
) -> None:
    recovery = tmp_path / "recovery"
    traffic = _Traffic(six, rounds=70, per_round=6, seed=11)
    port = _free_ports(3)
    with _members(six, recovery) as before:
        before.start("0/2", port)
        before.start("1/2", port)
        traffic.start()
        time.sleep(6)  # archives written, positions recorded, opportunities open
        before.stop_all()  # a clean stop of the old layout
    with connect(six.database_url, autocommit=True) as conn:
        assert count_rows(conn, "worker_positions") == 2 * PARTITIONS
    with _members(six, recovery) as after:
        for index in range(3):
            after.start(f"{index}/3", port)
        traffic.join()
        data = traffic.data
        _wait_for_archives(six, len(data.opportunities), after)
        _assert_exactly(six, data)
        logs = "".join(child.tail(400) for child in after.children.values())
        assert logs.count("starts at its safe offset") == 2 * PARTITIONS
    assert sorted(p.name for p in recovery.iterdir()) == [
        "member-0-of-2",
        "member-0-of-3",
        "member-1-of-2",
        "member-1-of-3",
        "member-2-of-3",
    ]
