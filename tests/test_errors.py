"""Every error the project raises on purpose is a MediationError with a stable code,
in one of the two families the command line and the gateway map."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from mediation.errors import InputError, MediationError, ServiceError

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mediation", "gateway", "dataflows", "sinks", "storage", "replay")


def _error_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package_name in PACKAGES:
        for path in sorted((ROOT / package_name).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__main__":
                continue
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            module = importlib.import_module(name)
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if (
                    issubclass(obj, BaseException)
                    and obj.__module__ == name
                    and not obj.__name__.startswith("_")
                ):
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[name] for name in sorted(found)]


ROOTS = (MediationError, InputError, ServiceError)
ERRORS = [error for error in _error_classes() if error not in ROOTS]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__qualname__)
def test_every_error_is_in_one_family_of_the_tree(error: type[BaseException]) -> None:
    assert issubclass(error, MediationError)
    assert issubclass(error, InputError) != issubclass(error, ServiceError)


def test_each_error_class_has_its_own_stable_code() -> None:
    codes = [error.code for error in ERRORS if issubclass(error, MediationError)]
    assert len(codes) == len(set(codes)), sorted(codes)
    assert all(code.isidentifier() and code.islower() for code in codes)


def test_the_families_keep_the_builtin_bases_older_code_catches() -> None:
    assert issubclass(InputError, ValueError)
    assert issubclass(ServiceError, RuntimeError)


def test_the_tree_in_the_root_docstring_names_every_error() -> None:
    import mediation.errors

    tree = mediation.errors.__doc__ or ""
    missing = [
        error.__qualname__
        for error in ERRORS
        if f" {error.__qualname__} " not in tree or f" {error.code}" not in tree
    ]
    assert missing == []
