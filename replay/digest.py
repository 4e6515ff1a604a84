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

__all__ = ["ResultDigest", "canonical_line", "result_hash"]


def canonical_line(result: Mapping[str, Any]) -> bytes:
    """One result's canonical JSON line (sorted keys, no spaces, UTF-8, ``\\n``)."""
    return orjson.dumps(result, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


class ResultDigest:
    """The hash and the summary of results fed in ``opportunity_key`` order.

    The summary says how many records would change and how: per field, the
    outcome transitions, and the revenue difference.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._last_key = ""
        self.records = self.changed = self.missing = 0
        self._fields: Counter[str] = Counter()
        self._outcomes: Counter[str] = Counter()
        self._revenue_delta = 0

    def add(self, result: Mapping[str, Any]) -> bytes:
        """Account for ``result``; its canonical line."""
        key = str(result["opportunity_key"])
        if key <= self._last_key:
            raise ValueError(f"results out of key order: {key} after {self._last_key}")
        self._last_key = key
        line = canonical_line(result)
        self._sha.update(line)
        self.records += 1
        if "missing" in result:
            self.missing += 1
            return line
        changes: Mapping[str, Any] = result.get("changes") or {}
        if result.get("inputs_hash_matches") is False:
            changes = {"inputs_hash": True}
        if changes:
            self.changed += 1
            self._fields.update(list(changes))  # the names (a mapping would add its values)
        if "outcome" in changes:
            self._outcomes[
                f"{changes['outcome']['archive']} -> {changes['outcome']['recomputed']}"
            ] += 1
        if "revenue_micros" in changes:
            revenue = changes["revenue_micros"]
            self._revenue_delta += revenue["recomputed"] - revenue["archive"]
        return line

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def summary(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "changed": self.changed,
            "missing": self.missing,
            "fields": dict(sorted(self._fields.items())),
            "outcomes": dict(sorted(self._outcomes.items())),
            "revenue_micros_delta": self._revenue_delta,
        }


def result_hash(results: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 of the results' canonical lines, in ``opportunity_key`` order."""
    digest = ResultDigest()
    for result in sorted(results, key=lambda result: str(result["opportunity_key"])):
        digest.add(result)
    return digest.hexdigest()
