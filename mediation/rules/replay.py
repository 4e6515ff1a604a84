"""Replay results (``spec/contracts.md`` section 8), pure: stored inputs in, canonical data out.

- ``snapshot``: the archived closing record and the exact inputs it counted,
  with a check that ``inputs_hash`` still matches them;
- ``recompute``: the rules run again over every stored input, late events
  included, with a field-by-field diff against the archive.

Results are plain JSON data; ``result_hash`` is SHA-256 over their
canonical JSON (sorted keys, no spaces), so the same selection gives the
same hash wherever its days are stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from .amendment import AMENDABLE_FIELDS
from .closure import close_opportunity, inputs_hash
from .model import ArchiveRecord, Event, Opportunity, event_as_dict

__all__ = [
    "MODES",
    "canonical_json",
    "recompute_result",
    "result_hash",
    "snapshot_result",
    "summary",
]

MODES = ("snapshot", "recompute")


def _archive(archive: ArchiveRecord) -> dict[str, Any]:
    document = asdict(archive)
    document["counts"] = dict(archive.counts)
    return document


def snapshot_result(
    opportunity: Opportunity, events: Sequence[Event], archive: ArchiveRecord
) -> dict[str, Any]:
    """The archive, the inputs it counted, and whether its ``inputs_hash`` still matches."""
    closed = close_opportunity(opportunity, events, archive.rule_version)
    counted = [stored.event for stored in closed.events if stored.excluded_reason is None]
    return {
        "opportunity_key": archive.opportunity_key,
        "mode": "snapshot",
        "archive": _archive(archive),
        "counted_events": [event_as_dict(event) for event in counted],
        "inputs_hash_matches": inputs_hash(opportunity, counted) == archive.inputs_hash,
    }


def recompute_result(
    opportunity: Opportunity,
    events: Sequence[Event],
    late_events: Sequence[Event],
    archive: ArchiveRecord,
    rule_version: str | None = None,
) -> dict[str, Any]:
    """The rules' record over every stored input (late ones too) and what differs."""
    recomputed = close_opportunity(
        opportunity, [*events, *late_events], rule_version or archive.rule_version
    ).archive
    before, after = _archive(archive), _archive(recomputed)
    return {
        "opportunity_key": archive.opportunity_key,
        "mode": "recompute",
        "rule_version": recomputed.rule_version,
        "archive": before,
        "recomputed": after,
        "changes": {
            name: {"archive": before[name], "recomputed": after[name]}
            for name in AMENDABLE_FIELDS
            if before[name] != after[name]
        },
    }


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def result_hash(results: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 of the results' canonical JSON, in ``opportunity_key`` order."""
    ordered = sorted(results, key=lambda result: str(result["opportunity_key"]))
    return hashlib.sha256(canonical_json(ordered)).hexdigest()


def summary(results: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """How many records, how many would change, and how often each field changes."""
    records = changed = 0
    fields: dict[str, int] = {}
    for result in results:
        records += 1
        changes = result.get("changes") or {}
        if result.get("inputs_hash_matches") is False:
            changes = {"inputs_hash": True}
        if changes:
            changed += 1
        for name in changes:
            fields[name] = fields.get(name, 0) + 1
    return {"records": records, "changed": changed, "fields": dict(sorted(fields.items()))}
