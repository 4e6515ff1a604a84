"""The compiled and the interpreted build give byte-identical outputs on generated traffic.

Both builds run in child processes (``tests/rules/equivalence_child.py``,
one per build, for the whole module) fed the same hypothesis-generated
opportunities and events; their closing records (pickled), ``inputs_hash``es,
the worker state machine's outputs and states, and the replay results'
hash (recompute and snapshot, read back from stored rows) must be equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_compiled_build
from hypothesis import given, settings
from hypothesis import strategies as st
from test_properties import scenarios

CHILD = Path(__file__).with_name("equivalence_child.py")
REPO_ROOT = CHILD.parent.parent.parent


class _Build:
    """One build's child process, answering a JSON line per JSON line."""

    def __init__(self, build: str) -> None:
        env = {**os.environ, "MEDIATION_RULES_BUILD": build, "PYTHONPATH": str(REPO_ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        self.info = self._read()

    def _read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the child exited with {self.process.wait()}"
        return json.loads(line)

    def outputs(self, traffic: list[Any]) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(traffic) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.process.stdout.close()


@pytest.fixture(scope="module")
def builds() -> Iterator[tuple[_Build, _Build]]:
    require_compiled_build()
    interpreted, compiled = _Build("interpreted"), _Build("compiled")
    try:
        yield interpreted, compiled
    finally:
        interpreted.close()
        compiled.close()


def _plain(scenario: tuple[dict[str, Any], list[dict[str, Any]]]) -> list[Any]:
    opportunity, events = scenario
    waterfall = [[e.source_id, e.floor_micros, e.timeout_ms] for e in opportunity["waterfall"]]
    return [{**opportunity, "waterfall": waterfall}, events]


def test_the_children_run_the_build_they_were_asked_for(builds):
    interpreted, compiled = builds
    assert interpreted.info["build"] == "interpreted"
    assert set(interpreted.info["modules"].values()) == {"interpreted"}
    assert compiled.info["build"] == "compiled"
    assert set(compiled.info["modules"].values()) == {"compiled"}


@settings(max_examples=150, deadline=None)
@given(traffic=st.lists(scenarios(), min_size=1, max_size=6))
def test_both_builds_give_byte_identical_outputs(builds, traffic):
    interpreted, compiled = builds
    plain = [_plain(scenario) for scenario in traffic]
    expected = interpreted.outputs(plain)
    assert expected["results"] == 2 * len({s[0]["opportunity_key"] for s in plain})
    assert compiled.outputs(plain) == expected
