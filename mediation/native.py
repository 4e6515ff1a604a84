"""Which build of the hot modules runs: compiled (mypyc) or interpreted, decided at import.

``python -m mediation.compile`` compiles the modules of ``COMPILED_MODULES``
in place: an extension module next to each ``.py``, and a stamp
(``STAMP_NAME``) with the hash of the sources it was built from. Python
prefers an extension module over the ``.py`` beside it; ``install()``
(called by ``mediation/__init__.py`` before anything else is imported)
decides once per process whether that may happen:

- ``MEDIATION_RULES_BUILD=interpreted``: the ``.py`` files (debugging,
  the interpreted half of the equivalence tests);
- ``compiled``: the extension modules, or a one-line failure when they are
  missing or stale;
- ``auto``: the extension modules when they are built from the sources as
  they are now, else the ``.py`` files (stale: with a one-line warning on
  stderr; never built: silently).

The default (``DEFAULT_BUILD``) is ``auto``: with native records
(mediation/rules/records.py) the compiled build is faster (measured in
one session: a range replay 2.55x in the rules benchmark and 1.5-1.6x end to
end with Postgres reads, the worker 7-14% less CPU per message;
docs/benchmarks.md, "Rules, compiled and interpreted"), so it runs
wherever the bootstrap built it; ``interpreted`` switches it off (for
debugging: tracebacks and profilers see the ``.py`` files). The tests
hold the two builds byte-identical.

A stale build is never loaded: a source edited after the compile would
otherwise run as its old compiled self. The check hashes the sources
(about 200 kB) once per process. All the modules switch together: compiled
modules of one build call each other natively, so a mix is never loaded.

This module runs before settings exist, so it reads ``MEDIATION_RULES_BUILD``
itself (the one read of the environment outside ``mediation/settings.py``,
which validates the same variable for ``mediation status``). Standard
library only: ``mediation.rules`` must stay importable without third-party
packages.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from .errors import InputError

__all__ = [
    "BUILDS",
    "COMPILED_MODULES",
    "DEFAULT_BUILD",
    "ENV_VARIABLE",
    "STAMP_NAME",
    "BuildDecision",
    "RulesBuildError",
    "build_info",
    "decide",
    "install",
    "source_hash",
    "source_path",
]

ENV_VARIABLE = "MEDIATION_RULES_BUILD"
BUILDS = ("auto", "compiled", "interpreted")
DEFAULT_BUILD = "auto"  # see the docstring

# The modules mypyc compiles, in one place (the compile, the switch, the
# tests and the benchmarks read it). Every module of mediation/rules except
# the package's __init__ (re-exports only) and records.py (see there), and
# the replay's rows-into-records readers (storage/stored_records.py).
# Importing a module of mediation/ runs mediation/__init__.py, and so this
# switch, first; storage/__init__.py imports mediation for the same reason.
# A module of another package must too, or it would load compiled whatever
# the switch said.
# mediation/errors.py stays interpreted (mypyc does not compile its classes:
# they inherit from builtin exception types); compiled modules import it.
COMPILED_MODULES: tuple[str, ...] = (
    "mediation.rules.amendment",
    "mediation.rules.breaker",
    "mediation.rules.closure",
    "mediation.rules.identity",
    "mediation.rules.model",
    "mediation.rules.publish",
    "mediation.rules.replay",
    "mediation.rules.soak",
    "mediation.rules.state",
    "mediation.rules.tiering",
    "mediation.rules.triggers",
    "mediation.rules.ulid",
    "mediation.rules.validation",
    "mediation.rules.waterfall",
    "storage.stored_records",
)
# The compile writes it next to this module once the build succeeded.
STAMP_NAME = "native_build.json"
# Where the packages of COMPILED_MODULES live (the checkout, or site-packages).
_ROOT = Path(__file__).resolve().parent.parent


def source_path(module: str) -> Path:
    return _ROOT.joinpath(*module.split(".")).with_suffix(".py")


def extension_path(module: str) -> Path:
    """The extension module this Python would load for ``module``."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    path = source_path(module)
    return path.with_name(path.stem + suffix)


def stamp_path() -> Path:
    return Path(__file__).resolve().with_name(STAMP_NAME)


def source_hash(modules: Sequence[str] = COMPILED_MODULES) -> str:
    """SHA-256 over the modules' names and source bytes: what a build was made from."""
    digest = hashlib.sha256()
    for module in modules:
        data = source_path(module).read_bytes()
        digest.update(f"{module}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


class BuildDecision:
    """What was asked (``requested``), what runs (``build``) and why."""

    def __init__(self, requested: str, build: str, reason: str) -> None:
        self.requested, self.build, self.reason = requested, build, reason

    def __repr__(self) -> str:
        return f"BuildDecision({self.requested!r}, {self.build!r}, {self.reason!r})"


class RulesBuildError(InputError):
    """The requested build cannot run (one line: what and how to fix it)."""

    code = "rules_build_invalid"


def stray_extensions() -> list[str]:
    """Modules of the compiled packages with an extension module but not in the list.

    Left by a compile of another version of the list; Python would load them.
    """
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    packages = sorted({module.rpartition(".")[0] for module in COMPILED_MODULES})
    strays = []
    for package in packages:
        folder = _ROOT.joinpath(*package.split("."))
        for path in folder.glob(f"*{suffix}"):
            module = f"{package}.{path.name[: -len(suffix)]}"
            if (
                module not in COMPILED_MODULES
                and path.with_name(path.name[: -len(suffix)] + ".py").exists()
            ):
                strays.append(module)
    return sorted(strays)


def _built_state() -> tuple[str, str]:
    """("current" | "stale" | "absent", why) for the compiled build on disk."""
    built = [extension_path(module).exists() for module in COMPILED_MODULES]
    if not any(built):
        return "absent", "not compiled (python -m mediation.compile builds it)"
    if stray_extensions():
        return "stale", f"extension modules not in the build: {', '.join(stray_extensions())}"
    try:
        stamp = json.loads(stamp_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "stale", "compiled modules without their build stamp"
    if not all(built) or stamp.get("modules") != list(COMPILED_MODULES):
        return "stale", "the compiled modules are not those of this version"
    if stamp.get("cache_tag") != sys.implementation.cache_tag:
        return "stale", f"compiled for {stamp.get('cache_tag')}"
    if stamp.get("source_hash") != source_hash():
        return "stale", "sources changed since the compile (python -m mediation.compile)"
    return "current", "compiled from the current sources"


def decide(requested: str) -> BuildDecision:
    """Which build runs for a value of ``MEDIATION_RULES_BUILD``."""
    requested = requested or DEFAULT_BUILD
    if requested not in BUILDS:
        raise RulesBuildError(
            f"{ENV_VARIABLE}: expected one of {', '.join(BUILDS)}, got {requested!r}"
        )
    if requested == "interpreted":
        return BuildDecision(requested, "interpreted", f"{ENV_VARIABLE}=interpreted")
    state, why = _built_state()
    if state == "current":
        return BuildDecision(requested, "compiled", why)
    if requested == "compiled":
        raise RulesBuildError(f"{ENV_VARIABLE}=compiled, but the compiled build is {state}: {why}")
    return BuildDecision(requested, "interpreted", f"compiled build {state}: {why}")


class _SourceFirst:
    """A meta path finder: the compiled modules' ``.py`` files ahead of their extensions."""

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = frozenset(modules)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


_decision: BuildDecision | None = None


def install() -> BuildDecision:
    """Decide the build for this process (once) and make imports follow it."""
    global _decision
    if _decision is None:
        # The one environment read outside mediation/settings.py: it must act
        # before the compiled modules are first imported, before settings exist.
        decision = decide(os.environ.get(ENV_VARIABLE, DEFAULT_BUILD))
        if decision.build == "interpreted":
            sys.meta_path.insert(0, _SourceFirst([*COMPILED_MODULES, *stray_extensions()]))
            if decision.reason.startswith("compiled build stale"):
                sys.stderr.write(f"mediation: {decision.reason}; using the interpreted build\n")
        _decision = decision
    return _decision


def build_info() -> dict[str, object]:
    """The build asked for and running, and how each compiled module actually loaded."""
    decision = install()
    modules: dict[str, str] = {}
    for module in COMPILED_MODULES:
        loaded = sys.modules.get(module)
        if loaded is None:
            modules[module] = f"{decision.build} (not imported yet)"
        else:
            origin = str(getattr(loaded, "__file__", "") or "")
            modules[module] = "interpreted" if origin.endswith(".py") else "compiled"
    return {
        "requested": decision.requested,
        "build": decision.build,
        "reason": decision.reason,
        "modules": modules,
    }
