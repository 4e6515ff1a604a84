"""The compiled build: the switch, the stale-build guard, and what keeps both builds alike."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import build_event, build_opportunity, require_compiled_build

from mediation import native
from mediation.rules.closure import close_opportunity
from mediation.rules.model import ArchiveRecord, Policy
from mediation.rules.replay import _ARCHIVE_FIELDS, _archive
from mediation.rules.state import drain, on_event, on_opportunity

REPO_ROOT = Path(native.__file__).resolve().parent.parent

_PROBE = """
import importlib, json, sys
import mediation
from mediation import native
files = {m: importlib.import_module(m).__file__ for m in native.COMPILED_MODULES}
print(json.dumps({"info": mediation.build_info(), "files": files}))
"""


def _probe(build: str | None, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    env.pop("MEDIATION_RULES_BUILD", None)
    if build is not None:
        env["MEDIATION_RULES_BUILD"] = build
    return subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_interpreted_loads_every_compiled_module_from_its_py_file():
    done = _probe("interpreted")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["info"]["build"] == "interpreted"
    assert all(path.endswith(".py") for path in report["files"].values()), report["files"]
    assert set(report["info"]["modules"].values()) == {"interpreted"}


def test_compiled_loads_the_extension_modules():
    require_compiled_build()
    done = _probe("compiled")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["info"]["build"] == "compiled"
    assert not [path for path in report["files"].values() if path.endswith(".py")]
    assert done.stderr == ""


def test_a_bad_value_fails_in_one_line():
    done = _probe("fast")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "mediation: MEDIATION_RULES_BUILD: expected one of auto, compiled, interpreted, got 'fast'"
    ]


# -- the stale-build guard, on a copy of the sources --------------------------------


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the compiled modules' sources, where ``native`` looks for the build."""
    for module in native.COMPILED_MODULES:
        target = tmp_path.joinpath(*module.split(".")).with_suffix(".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(native.source_path(module), target)
    monkeypatch.setattr(native, "_ROOT", tmp_path)
    stamp = tmp_path / "mediation" / native.STAMP_NAME
    monkeypatch.setattr(native, "stamp_path", lambda: stamp)
    return tmp_path


def _fake_build(tree: Path) -> None:
    """Extension files for every module and a stamp of the current sources."""
    for module in native.COMPILED_MODULES:
        native.extension_path(module).write_bytes(b"")
    stamp = {
        "modules": list(native.COMPILED_MODULES),
        "source_hash": native.source_hash(),
        "cache_tag": sys.implementation.cache_tag,
    }
    native.stamp_path().write_text(json.dumps(stamp))


def test_without_a_build_auto_is_interpreted_and_compiled_fails(tree: Path):
    assert native.decide("auto").build == "interpreted"
    assert "absent" in native.decide("auto").reason
    with pytest.raises(native.RulesBuildError, match="absent"):
        native.decide("compiled")


def test_a_build_of_the_current_sources_is_used(tree: Path):
    _fake_build(tree)
    assert native.decide("auto").build == "compiled"
    assert native.decide("compiled").build == "compiled"
    assert native.decide("interpreted").build == "interpreted"


def test_a_source_changed_after_the_compile_makes_the_build_stale(tree: Path):
    _fake_build(tree)
    closure = native.source_path("mediation.rules.closure")
    closure.write_text(closure.read_text() + "\n# edited\n")
    decision = native.decide("auto")
    assert decision.build == "interpreted"
    assert "sources changed" in decision.reason
    with pytest.raises(native.RulesBuildError, match="stale"):
        native.decide("compiled")


def test_a_missing_stamp_or_a_stray_extension_makes_the_build_stale(tree: Path):
    _fake_build(tree)
    stray = native.source_path("mediation.rules.closure").with_name("extra.py")
    stray.write_text("")
    native.extension_path("mediation.rules.extra").write_bytes(b"")
    assert native.stray_extensions() == ["mediation.rules.extra"]
    assert "not in the build" in native.decide("auto").reason
    stray.unlink()
    native.extension_path("mediation.rules.extra").unlink()
    assert native.decide("auto").build == "compiled"
    native.stamp_path().unlink()
    assert native.decide("auto").build == "interpreted"


def test_a_stale_build_is_never_loaded(tmp_path: Path):
    """End to end: a copy of the built packages, one source edited, imports the .py files."""
    require_compiled_build()
    for package in ("mediation", "storage"):
        shutil.copytree(
            REPO_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    closure = tmp_path / "mediation" / "rules" / "closure.py"
    closure.write_text(closure.read_text() + "\n# edited after the compile\n")
    done = _probe("auto", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert all(path.endswith(".py") for path in report["files"].values())
    assert all(path.startswith(str(tmp_path)) for path in report["files"].values())
    assert done.stderr.splitlines() == [
        "mediation: compiled build stale: sources changed since the compile "
        "(python -m mediation.compile); using the interpreted build"
    ]
    assert _probe("compiled", cwd=tmp_path).returncode != 0


def test_the_default_runs_the_compiled_build_when_it_is_current():
    """``auto`` is the default (mediation/native.py): the bootstrap's build runs, silently."""
    require_compiled_build()
    done = _probe(None, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["info"]["build"] == "compiled"
    assert not any(path.endswith(".py") for path in report["files"].values())
    assert done.stderr == ""


# -- what keeps the builds alike ------------------------------------------------------


_NATIVE_RECORD = [
    "mypyc_attr(allow_interpreted_subclasses=True, acyclic=True)",
    "dataclass(frozen=True, slots=True)",
]


def _native_records(module: str) -> list[ast.ClassDef]:
    tree = ast.parse(native.source_path(module).read_text(encoding="utf-8"))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any("dataclass" in ast.unparse(d) for d in node.decorator_list)
    ]


@pytest.mark.parametrize("module", native.COMPILED_MODULES)
def test_compiled_modules_declare_dataclasses_only_as_native_records(module: str):
    """A dataclass in a compiled module is a native record (mediation/rules/records.py).

    Anything else mypyc makes native too, but with the dataclass's
    interpreted ``__init__`` and mypyc's pickling (which a frozen class refuses).
    """
    for cls in _native_records(module):
        assert [ast.unparse(d) for d in cls.decorator_list] == _NATIVE_RECORD, cls.name
        methods = {node.name: node for node in cls.body if isinstance(node, ast.FunctionDef)}
        assert ast.unparse(methods["__getstate__"].body[-1]) == "return record_state(self)"
        assert ast.unparse(methods["__setstate__"].body[-1]) == "set_record_state(self, state)"
        # __init__: each field, in order, stored once, as the dataclass's own would.
        fields = [
            node.target.id
            for node in cls.body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        ]
        init = methods["__init__"]
        assert [a.arg for a in init.args.args] == ["self", *fields], cls.name
        stored = [
            node.value.args[1].value
            for node in init.body
            if isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and ast.unparse(node.value.func) == "object.__setattr__"
        ]
        assert stored == fields, cls.name


def _native_record_classes() -> list[type]:
    return [
        getattr(importlib.import_module(module), cls.name)
        for module in native.COMPILED_MODULES
        for cls in _native_records(module)
    ]


@pytest.mark.parametrize("cls", _native_record_classes(), ids=lambda cls: cls.__name__)
def test_native_records_init_as_their_dataclass_would(cls: type):
    """The written ``__init__``: the defaults of the fields, and frozen afterwards."""
    fields = dataclasses.fields(cls)
    assert cls.__match_args__ == tuple(f.name for f in fields)
    if native.install().build == "interpreted":  # a compiled __init__ has no signature
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        assert [p.name for p in parameters] == [f.name for f in fields]
        for parameter, field in zip(parameters, fields, strict=True):
            if field.default is not dataclasses.MISSING:
                assert parameter.default == field.default, field.name
            elif field.default_factory is dataclasses.MISSING:
                assert parameter.default is inspect.Parameter.empty, field.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cls.__new__(cls), fields[0].name, None)


def test_states_and_records_survive_pickling_in_this_build():
    """Recovery snapshots pickle the worker's states (whichever build wrote them)."""
    policy = Policy()
    state, _ = on_opportunity(None, build_opportunity(), 0, policy)
    state, _ = on_event(state, build_event(attrs={"a": 1}), 0, policy)
    assert pickle.loads(pickle.dumps(state)) == state
    closed_state, outputs = drain(state, policy)
    assert pickle.loads(pickle.dumps(closed_state)) == closed_state
    assert pickle.loads(pickle.dumps(outputs)) == outputs


def test_the_archive_document_keeps_the_fields_order():
    archive = close_opportunity(build_opportunity(), [build_event()]).archive
    assert isinstance(archive, ArchiveRecord)
    assert list(_archive(archive)) == list(_ARCHIVE_FIELDS)


@pytest.mark.parametrize("module", native.COMPILED_MODULES)
def test_error_classes_keep_their_code_on_the_class_in_this_build(module: str):
    """mypyc keeps a native class's class-level values per instance: errors take @python_class."""
    from mediation.errors import MediationError

    loaded = importlib.import_module(module)
    errors = [
        value
        for value in vars(loaded).values()
        if isinstance(value, type)
        and issubclass(value, MediationError)
        and value.__module__ == module
    ]
    assert all("code" in vars(error) for error in errors), errors


def test_settings_accept_exactly_the_builds_the_switch_knows():
    from mediation.settings import RULES_BUILDS, Settings, SettingsError

    assert RULES_BUILDS == native.BUILDS
    assert Settings.from_env({"MEDIATION_RULES_BUILD": "interpreted"}).rules_build == "interpreted"
    with pytest.raises(SettingsError, match="MEDIATION_RULES_BUILD"):
        Settings.from_env({"MEDIATION_RULES_BUILD": "fast"})
