"""What late events would have changed in an archive record.

The archive record of an opportunity never changes once written; events
that arrive later are stored as late, and the amendment ledger records,
field by field, the difference between the archived record and the record
the same rules give with the late events included.
"""

from __future__ import annotations

from collections.abc import Mapping

from .model import ArchiveRecord

__all__ = ["AMENDABLE_FIELDS", "archive_changes"]

# The fields a dispute looks at; identity fields (key, app, placement,
# opened_at, config and rule version) cannot change with more events.
AMENDABLE_FIELDS = (
    "close_reason",
    "closed_at_ms",
    "outcome",
    "rewarded",
    "credited_source_id",
    "revenue_micros",
    "currency",
    "counts",
    "counted_events",
    "excluded_events",
    "inputs_hash",
)


def _plain(value: object) -> object:
    return dict(value) if isinstance(value, Mapping) else value  # counts: JSON-ready


def archive_changes(
    archived: ArchiveRecord, amended: ArchiveRecord
) -> dict[str, dict[str, object]]:
    """``{field: {"archived": old, "with_late": new}}`` for every field that differs."""
    changes = {}
    for name in AMENDABLE_FIELDS:
        old, new = _plain(getattr(archived, name)), _plain(getattr(amended, name))
        if old != new:
            changes[name] = {"archived": old, "with_late": new}
    return changes
