"""The canonical form of replay results, their hash and their summary.

A result's canonical form is one line of JSON (orjson, sorted keys, no
spaces, UTF-8); the result hash is SHA-256 over the lines in
``opportunity_key`` order, so ``sha256sum`` of a JSONL output gives it too.
orjson is pinned by the project, so the bytes are the same on every
machine.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

__all__ = ["ResultDigest", "Tally", "canonical_line", "result_hash"]


def canonical_line(result: Mapping[str, Any]) -> bytes:
    """One result's canonical JSON line (sorted keys, no spaces, UTF-8, ``\\n``)."""
    return orjson.dumps(result, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


class Tally:
    """The counts behind a summary, of results fed in ``opportunity_key`` order.

    Picklable: a parallel replay's worker tallies its unit, and the runner
    adds the units' tallies in unit order (``merge``), which gives the
    same counts as tallying every result in one process.
    """

    def __init__(self) -> None:
        self.first_key = self.last_key = ""
        self.records = self.changed = self.missing = 0
        self.fields: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.revenue_delta = 0

    def add(self, result: Mapping[str, Any]) -> None:
        key = str(result["opportunity_key"])
        if key <= self.last_key:
            raise ValueError(f"results out of key order: {key} after {self.last_key}")
        if not self.first_key:
            self.first_key = key
        self.last_key = key
        self.records += 1
        if "missing" in result:
            self.missing += 1
            return
        changes: Mapping[str, Any] = result.get("changes") or {}
        if result.get("inputs_hash_matches") is False:
            changes = {"inputs_hash": True}
        if changes:
            self.changed += 1
            self.fields.update(list(changes))  # the names (a mapping would add its values)
        if "outcome" in changes:
            self.outcomes[
                f"{changes['outcome']['archive']} -> {changes['outcome']['recomputed']}"
            ] += 1
        if "revenue_micros" in changes:
            revenue = changes["revenue_micros"]
            self.revenue_delta += revenue["recomputed"] - revenue["archive"]

    def merge(self, later: Tally) -> None:
        """Add the tally of the results that come after these."""
        if not later.records:
            return
        if later.first_key <= self.last_key:
            raise ValueError(f"results out of key order: {later.first_key} after {self.last_key}")
        if not self.first_key:
            self.first_key = later.first_key
        self.last_key = later.last_key
        self.records += later.records
        self.changed += later.changed
        self.missing += later.missing
        self.fields.update(later.fields)
        self.outcomes.update(later.outcomes)
        self.revenue_delta += later.revenue_delta


class ResultDigest:
    """The hash and the summary of results fed in ``opportunity_key`` order.

    The summary says how many records would change and how: per field, the
    outcome transitions, and the revenue difference. Results come one at a
    time (``add``) or as a block of canonical lines with their tally
    (``add_block``, a parallel replay's unit): the same results give the
    same hash and summary either way.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._tally = Tally()

    @property
    def records(self) -> int:
        return self._tally.records

    @property
    def changed(self) -> int:
        return self._tally.changed

    @property
    def missing(self) -> int:
        return self._tally.missing

    def add(self, result: Mapping[str, Any]) -> bytes:
        """Account for ``result``; its canonical line."""
        self._tally.add(result)
        line = canonical_line(result)
        self._sha.update(line)
        return line

    def add_block(self, lines: bytes, tally: Tally) -> None:
        """Account for consecutive results: their canonical lines and their tally."""
        self._tally.merge(tally)
        self._sha.update(lines)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def summary(self) -> dict[str, Any]:
        tally = self._tally
        return {
            "records": tally.records,
            "changed": tally.changed,
            "missing": tally.missing,
            "fields": dict(sorted(tally.fields.items())),
            "outcomes": dict(sorted(tally.outcomes.items())),
            "revenue_micros_delta": tally.revenue_delta,
        }


def result_hash(results: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 of the results' canonical lines, in ``opportunity_key`` order."""
    digest = ResultDigest()
    for result in sorted(results, key=lambda result: str(result["opportunity_key"])):
        digest.add(result)
    return digest.hexdigest()
