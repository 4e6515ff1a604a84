"""How the rules declare their records and errors.

Two kinds of record, the same frozen slotted dataclasses in the interpreted
build:

- ``@record`` (``@dataclass(frozen=True, slots=True)``) and
  ``@record_unslotted``: an ordinary Python class in the compiled build too.
  mypyc cannot see through these decorators, so it leaves the class alone.
- A *native record*, for the records the compiled rules build and read on
  their hot paths: written out as
  ``@mypyc_attr(allow_interpreted_subclasses=True, acyclic=True)`` over
  ``@dataclass(frozen=True, slots=True)``, with an explicit ``__init__``
  (positional and keyword parameters exactly the fields, in their order,
  with their defaults) that sets each field with ``object.__setattr__(self,
  "name", value)``, and ``__getstate__`` / ``__setstate__`` that call
  ``record_state`` / ``set_record_state``. In the compiled build mypyc makes
  it a native class: the ``__init__`` is compiled and each
  ``object.__setattr__`` becomes a store into the instance (the dataclass's
  own generated ``__init__`` is an interpreted function, so a native
  dataclass without one constructs no faster), and compiled code reads its
  fields directly. ``dataclass`` still runs on it when the module loads, so
  ``__eq__``, ``__hash__``, ``__repr__``, the frozen ``__setattr__``
  (``FrozenInstanceError``), ``fields`` and ``replace`` are the
  dataclass's in both builds.

  Pickles: both builds write what a frozen slotted dataclass writes (the
  class by name and the list of field values, ``record_state``), so a pickle
  of either build, or of the records from before native records, loads in
  either. mypyc's own pickling of a native class sets attributes with
  ``setattr`` (refused by a frozen class) and its constructor runs
  ``__init__`` unless the class allows interpreted subclasses (the
  ``mypyc_attr``; its ``serializable`` flag would be the natural one, but
  mypyc 2.4 then leaves a native class's ``__init__`` uncalled when Python
  code constructs it). Pickle protocols 0 and 1 cannot pickle a native
  class (the project pickles with the default protocol, 4).

  ``acyclic``: the cycle collector does not track a native record (a
  third of the compiled replay's time went into collections): a record
  that its own fields lead back to (a mapping field holding the record)
  would never be freed. Records hold decoded data, never themselves.

  A native record's fields are typed in C: a value of another type than
  declared (an ``int`` field given a ``float``) is refused with
  ``TypeError`` in the compiled build. tests/rules/test_compiled_build.py
  holds the native records to this shape.

Error classes take ``@python_class``. This module is never compiled: a
compiled function cannot carry the attribute ``dataclass_transform`` sets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar, dataclass_transform

__all__ = [
    "mypyc_attr",
    "python_class",
    "record",
    "record_state",
    "record_unslotted",
    "set_record_state",
]

_Class = TypeVar("_Class")

if TYPE_CHECKING:
    # Type checking and mypyc only (mypyc reads the decorator by this name);
    # at run time it is the no-op below, so the rules need no third-party package.
    from mypy_extensions import mypyc_attr
else:

    def mypyc_attr(*args: Any, **kwargs: Any) -> Callable[[_Class], _Class]:
        return lambda cls: cls


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[_Class]) -> type[_Class]:
    """``@dataclass(frozen=True, slots=True)``, an ordinary class in the compiled build too."""
    return dataclass(frozen=True, slots=True)(cls)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record_unslotted(cls: type[_Class]) -> type[_Class]:
    """``@dataclass(frozen=True)``, an ordinary class in the compiled build too."""
    return dataclass(frozen=True)(cls)


def record_state(instance: Any) -> list[object]:
    """A native record's pickled state: what a frozen slotted dataclass pickles.

    The field values in the fields' order (``dataclasses._dataclass_getstate``).
    """
    return [getattr(instance, f.name) for f in fields(instance)]


def set_record_state(instance: Any, state: Sequence[object]) -> None:
    """Restore ``record_state`` (``dataclasses._dataclass_setstate``).

    A state shorter than the fields (a record pickled before fields were
    added at the end) leaves the rest unset, as a slotted dataclass does.
    """
    for f, value in zip(fields(instance), state, strict=False):
        object.__setattr__(instance, f.name, value)


def python_class(cls: type[_Class]) -> type[_Class]:
    """Leaves ``cls`` an ordinary Python class in the compiled build too.

    mypyc makes an undecorated class native, and a native class keeps its
    class-level values per instance: an error class's ``code`` would read as
    its base's from the class (the gateway and the CLI read it there).
    """
    return cls
