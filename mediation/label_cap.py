"""Bounded label values for Prometheus metrics.

Apps, placements and sources come from configs, but a label value is taken
from whatever a request or a record carries: a bug or a hostile caller must
not be able to grow a process's series without bound. ``LabelCap`` admits the
first ``limit`` distinct values it sees and answers ``other`` for every value
after that (for the life of the process: a series, once exported, stays).
``currency_label`` keeps ISO-4217-shaped codes (three capital letters) only.
"""

from __future__ import annotations

import re

__all__ = ["OTHER", "LabelCap", "currency_label"]

OTHER = "other"
_CURRENCY = re.compile(r"[A-Z]{3}")


class LabelCap:
    """The first ``limit`` distinct values pass; later new values become ``other``."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("a label cap admits at least one value")
        self.limit = limit
        self._admitted: set[str] = set()

    def __call__(self, value: str) -> str:
        admitted = self._admitted
        if value in admitted:
            return value
        if len(admitted) < self.limit:
            admitted.add(value)
            return value
        return OTHER


def currency_label(currency: str | None) -> str:
    """An ISO-4217-shaped code as it is, ``none`` when absent, else ``other``."""
    if currency is None:
        return "none"
    return currency if _CURRENCY.fullmatch(currency) else OTHER
