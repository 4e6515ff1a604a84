"""mediation.rules stays pure: standard library only, no clock, no IO, no randomness."""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mediation.rules

RULES_DIR = Path(mediation.rules.__file__).parent
REPO_ROOT = RULES_DIR.parent.parent
RULES_FILES = sorted(RULES_DIR.glob("*.py"))
RULES_MODULES = sorted(
    f"mediation.rules.{info.name}" for info in pkgutil.iter_modules([str(RULES_DIR)])
)

THIRD_PARTY = {
    "orjson",
    "psycopg",
    "psycopg_pool",
    "confluent_kafka",
    "redis",
    "bytewax",
    "starlette",
    "uvicorn",
    "httpx",
    "boto3",
    "botocore",
    "pyarrow",
    "prometheus_client",
    "hypothesis",
    "pytest",
}

# What the rules may import; anything else (os, time, random, socket, uuid,
# secrets, threading, logging...) would bring a clock, IO or randomness.
ALLOWED_IMPORTS = {
    "__future__",
    "collections",
    "collections.abc",
    "dataclasses",
    "datetime",
    "functools",  # lru_cache memoises pure functions only
    "hashlib",
    "json",
    "math",
    "operator",  # attrgetter: a C key function for sorting
    "re",
    "typing",
}

FORBIDDEN_TEXT = (
    "time.time",
    "time.monotonic",
    "perf_counter",
    "datetime.now",
    "utcnow",
    "date.today",
    ".now(",
    ".today(",
    "os.environ",
    "getenv",
    "urandom",
    "import os",
    "import time",
    "import socket",
    "import random",
    "from random",
    "import secrets",
    "import uuid",
    "print(",
)
# Whole-word calls only: ``is_open(`` is a rule, ``open(`` is file IO.
FORBIDDEN_CALLS = re.compile(r"(?<![\w.])open\(")

_PROBE = """
import json, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _modules_loaded_by_importing_rules() -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *RULES_MODULES],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=60,
    )
    return json.loads(result.stdout)


def test_every_rules_module_is_probed():
    names = {m.rsplit(".", 1)[1] for m in RULES_MODULES}
    assert {"ulid", "model", "closure", "state", "validation", "waterfall", "identity"} <= names


def test_importing_the_rules_loads_no_third_party_module():
    loaded = _modules_loaded_by_importing_rules()
    top_level = {name.split(".")[0] for name in loaded}
    assert not top_level & THIRD_PARTY
    # Everything newly loaded is the standard library or the package itself.
    assert top_level - set(sys.stdlib_module_names) <= {"mediation"}
    ours = {name for name in loaded if name.startswith("mediation")}
    # mediation.errors is the error vocabulary's root, standard library only;
    # mediation.native picks the build, and the compiled build's code is in
    # one shared library.
    package = {"mediation", "mediation.errors", "mediation.native", "mediation.rules"}
    assert ours <= {*package, "mediation.native_lib__mypyc", *RULES_MODULES}


@pytest.mark.parametrize("path", RULES_FILES, ids=lambda p: p.name)
def test_rules_source_imports_only_allowed_standard_modules(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # What only the type checker (and mypyc) reads never runs: records.py
    # names mypyc's class decorator there.
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            node.body = []
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module)
    assert imported <= ALLOWED_IMPORTS


@pytest.mark.parametrize("path", RULES_FILES, ids=lambda p: p.name)
def test_rules_source_reads_no_clock_environment_or_randomness(path: Path):
    text = path.read_text(encoding="utf-8")
    assert [needle for needle in FORBIDDEN_TEXT if needle in text] == []
    assert FORBIDDEN_CALLS.findall(text) == []
