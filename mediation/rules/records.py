"""How the rules declare their records (``@record``, never ``@dataclass``) and errors.

mypyc compiles a class decorated with ``@dataclass`` into a native class
whose frozen instances cannot be unpickled (the worker's recovery snapshots
pickle its states and records) and that constructs no faster. A class made
by these decorators is an ordinary Python class in both builds: the same
pickles, the same behaviour (tests/rules/test_compiled_build.py holds the
sources to it); error classes take ``@python_class``. This module is never
compiled: a compiled function cannot carry the attribute
``dataclass_transform`` sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

__all__ = ["python_class", "record", "record_unslotted"]

_Class = TypeVar("_Class")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[_Class]) -> type[_Class]:
    """``@dataclass(frozen=True, slots=True)``, an ordinary class in the compiled build too."""
    return dataclass(frozen=True, slots=True)(cls)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record_unslotted(cls: type[_Class]) -> type[_Class]:
    """``@dataclass(frozen=True)``, an ordinary class in the compiled build too."""
    return dataclass(frozen=True)(cls)


def python_class(cls: type[_Class]) -> type[_Class]:
    """Leaves ``cls`` an ordinary Python class in the compiled build too.

    mypyc makes an undecorated class native, and a native class keeps its
    class-level values per instance: an error class's ``code`` would read as
    its base's from the class (the gateway and the CLI read it there).
    """
    return cls
