"""Replay (``docs/contracts.md`` section 8), pure: selections, results, their hash and summary.

- A ``Selection`` names what to replay: opportunity keys, or a time range
  (half-open, on the opportunity's time) with optional app and placement.
  Opportunity keys are ULIDs minted from the request's time, so a range is
  also a key range: Postgres and the Parquet row-group statistics both
  prune by it.
- ``snapshot``: the archived closing record and the exact inputs it
  counted, with a check that ``inputs_hash`` still matches them;
- ``recompute``: the rules run again over every stored input, late events
  included, with a field-by-field diff against the archive; optionally
  under another rule version or another config snapshot's windows.

Results are plain JSON data; ``replay/digest.py`` gives their canonical
lines and hash.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from ..errors import InputError
from .amendment import AMENDABLE_FIELDS
from .closure import RULE_VERSION, close_opportunity, inputs_hash
from .model import ArchiveRecord, Event, Opportunity, event_as_dict
from .records import python_class, record, record_unslotted
from .ulid import day_of_ms, encode_ulid, is_ulid, ulid_time_ms

__all__ = [
    "DIFF_FIELDS",
    "MODES",
    "RULE_VERSIONS",
    "ReplayRequest",
    "ReplayRequestError",
    "Selection",
    "WindowOverride",
    "instant_ms",
    "missing_result",
    "parse_request",
    "recompute_result",
    "snapshot_result",
]

MODES = ("snapshot", "recompute")
RULE_VERSIONS = (RULE_VERSION,)
# What a dispute compares: the amendable fields, and which rules and config
# produced the record.
DIFF_FIELDS: Final = (*AMENDABLE_FIELDS, "config_version", "rule_version")
MAX_KEYS = 10_000
MAX_KEYS_PER_CHUNK = 1_000
# Opportunities replayed at a time: bounds memory (~100 MB) while keeping
# the per-chunk cost (a query per table, Parquet footers) small.
CHUNK_ROWS = 10_000
_EPOCH_DAY = dt.date(1970, 1, 1)
_MS_PER_DAY = 86_400_000
# A range ends by the last day a date can name (9999-12-31), before the
# last ULID time (year 10889): its days are partitions, so each must exist.
_END_OF_DATES_MS = ((dt.date.max - _EPOCH_DAY).days + 1) * _MS_PER_DAY
_NO_RANDOMNESS = bytes(10)


@python_class
class ReplayRequestError(InputError):
    """A replay request that cannot be served as asked; the message says why."""

    code = "replay_request_invalid"


@record
class Selection:
    """Opportunities to replay: ``keys``, or ``[start_ms, end_ms)`` with optional filters."""

    keys: tuple[str, ...] = ()
    start_ms: int | None = None
    end_ms: int | None = None
    app_id: str | None = None
    placement_id: str | None = None

    @classmethod
    def of_keys(cls, keys: Iterable[str]) -> Selection:
        keys = tuple(sorted(set(keys)))
        bad = [key for key in keys if not is_ulid(key)]
        if bad:
            raise ReplayRequestError(f"not an opportunity key: {', '.join(bad[:5])}")
        if not keys:
            raise ReplayRequestError("no opportunity key given")
        if len(keys) > MAX_KEYS:
            raise ReplayRequestError(f"at most {MAX_KEYS} keys per request; use a time range")
        return cls(keys=keys)

    @classmethod
    def of_range(
        cls,
        start_ms: int,
        end_ms: int,
        app_id: str | None = None,
        placement_id: str | None = None,
    ) -> Selection:
        if not 0 <= start_ms < end_ms <= _END_OF_DATES_MS:
            raise ReplayRequestError(
                f"the range must have from < to, both in epoch ms up to {_END_OF_DATES_MS} "
                f"(the end of 9999), got {start_ms} .. {end_ms}"
            )
        return cls((), start_ms, end_ms, app_id or None, placement_id or None)

    @property
    def is_range(self) -> bool:
        return self.start_ms is not None

    def days(self) -> list[dt.date]:
        """The UTC days (partitions) the selection touches, in order."""
        if not self.is_range:
            return sorted({day_of_ms(ulid_time_ms(key)) for key in self.keys})
        assert self.start_ms is not None and self.end_ms is not None
        first, last = day_of_ms(self.start_ms), day_of_ms(self.end_ms - 1)
        return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]

    def day_bounds(self) -> tuple[dt.date, dt.date]:
        """The first and the last UTC day the selection touches (without listing the days)."""
        if not self.is_range:
            days = self.days()
            return days[0], days[-1]
        assert self.start_ms is not None and self.end_ms is not None
        return day_of_ms(self.start_ms), day_of_ms(self.end_ms - 1)

    def key_bounds(self) -> tuple[str, str]:
        """``[low, high)`` on ``opportunity_key`` for a range (keys sort by their time)."""
        assert self.start_ms is not None and self.end_ms is not None
        return encode_ulid(self.start_ms, _NO_RANDOMNESS), encode_ulid(self.end_ms, _NO_RANDOMNESS)

    def day_spans(self, only: Iterable[dt.date] | None = None) -> list[tuple[dt.date, int, int]]:
        """Per day the range touches: ``(day, start_ms, end_ms)`` of its part of the range.

        ``only``: just those of these days the range touches, in order, so
        that a range over centuries costs what its stored days cost.
        """
        assert self.start_ms is not None and self.end_ms is not None
        if only is None:
            days = self.days()
        else:
            first, last = self.day_bounds()
            days = sorted(day for day in set(only) if first <= day <= last)
        spans = []
        for day in days:
            day_start = (day - _EPOCH_DAY).days * _MS_PER_DAY
            spans.append(
                (day, max(self.start_ms, day_start), min(self.end_ms, day_start + _MS_PER_DAY))
            )
        return spans

    def chunks(
        self, day_rows: Mapping[dt.date, int] | None = None, chunk_rows: int = CHUNK_ROWS
    ) -> Iterator[Selection]:
        """The selection in consecutive parts, in key order, each of about ``chunk_rows``.

        A range is cut at day boundaries, then into equal windows sized
        from ``day_rows`` (opportunities stored in each day's part of the
        range; days missing from it hold nothing and are skipped), so a
        range over years costs what its stored days cost.
        """
        if not self.is_range:
            for at in range(0, len(self.keys), MAX_KEYS_PER_CHUNK):
                yield Selection(keys=self.keys[at : at + MAX_KEYS_PER_CHUNK])
            return
        for day, start, end in self.day_spans(day_rows):
            rows = chunk_rows if day_rows is None else day_rows.get(day, 0)
            if rows <= 0:
                continue
            parts = -(-rows // chunk_rows)  # ceiling
            window = -(-(end - start) // parts)
            for window_start in range(start, end, window):
                yield dataclasses.replace(
                    self, start_ms=window_start, end_ms=min(window_start + window, end)
                )

    @classmethod
    def from_description(cls, selector: Mapping[str, Any]) -> Selection:
        """The selection ``describe`` recorded (a queued job's)."""
        if "opportunity_keys" in selector:
            return cls(keys=tuple(selector["opportunity_keys"]))
        return cls(
            (),
            int(selector["from_ms"]),
            int(selector["to_ms"]),
            selector.get("app_id"),
            selector.get("placement_id"),
        )

    def describe(self) -> dict[str, Any]:
        """The selector as recorded in ``replay_records`` (JSON)."""
        if not self.is_range:
            return {"opportunity_keys": list(self.keys)}
        selector: dict[str, Any] = {"from_ms": self.start_ms, "to_ms": self.end_ms}
        if self.app_id:
            selector["app_id"] = self.app_id
        if self.placement_id:
            selector["placement_id"] = self.placement_id
        return selector


@record
class WindowOverride:
    """A config snapshot's closing windows, to recompute as if it had been active."""

    config_version: int
    closure_window_ms: int
    grace_ms: int
    skew_tolerance_ms: int

    def apply(self, opportunity: Opportunity) -> Opportunity:
        return dataclasses.replace(
            opportunity,
            config_version=self.config_version,
            closure_window_ms=self.closure_window_ms,
            grace_ms=self.grace_ms,
            skew_tolerance_ms=self.skew_tolerance_ms,
        )


@record_unslotted
class ReplayRequest:
    selection: Selection
    mode: str = "snapshot"
    rule_version: str | None = None
    config_version: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ReplayRequestError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.rule_version is not None and self.rule_version not in RULE_VERSIONS:
            raise ReplayRequestError(
                f"unknown rule version {self.rule_version!r}; known: {', '.join(RULE_VERSIONS)}"
            )
        if self.mode == "snapshot" and (self.rule_version or self.config_version):
            raise ReplayRequestError(
                "a snapshot returns what was archived; rule_version and config_version "
                "need mode recompute"
            )


def instant_ms(value: object, name: str) -> int:
    """Epoch milliseconds from an integer or an ISO 8601 text (a date is its midnight UTC)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():  # isdigit alone accepts "\u00b2", which int refuses
            return int(text)
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)  # times are UTC unless they say otherwise
            return int(moment.timestamp() * 1000)
    raise ReplayRequestError(
        f"{name} must be epoch milliseconds or an ISO 8601 time, got {value!r}"
    )


def _optional_text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 128):
        raise ReplayRequestError(f"{name} must be a non-empty string of at most 128 characters")
    return value


def parse_request(body: Mapping[str, Any]) -> ReplayRequest:
    """A replay request from its JSON body (the replay API); ``ReplayRequestError`` says why not."""
    known = {"opportunity_key", "opportunity_keys", "from", "to", "app_id", "placement_id",
             "mode", "rule_version", "config_version", "format"}  # fmt: skip
    unknown = sorted(set(body) - known)
    if unknown:
        raise ReplayRequestError(f"unknown fields: {', '.join(unknown)}")
    keys = body.get("opportunity_keys")
    if "opportunity_key" in body:
        keys = [body["opportunity_key"], *(keys or [])]
    ranged = "from" in body or "to" in body
    if (keys is None) == (not ranged):
        raise ReplayRequestError("give opportunity_key(s), or from and to, not both")
    if keys is not None:
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise ReplayRequestError("opportunity_keys must be a list of strings")
        if body.get("app_id") or body.get("placement_id"):
            raise ReplayRequestError("app_id and placement_id filter a time range, not keys")
        selection = Selection.of_keys(keys)
    else:
        if "from" not in body or "to" not in body:
            raise ReplayRequestError("a time range needs both from and to")
        selection = Selection.of_range(
            instant_ms(body["from"], "from"),
            instant_ms(body["to"], "to"),
            _optional_text(body, "app_id"),
            _optional_text(body, "placement_id"),
        )
    config_version = body.get("config_version")
    if config_version is not None and (
        isinstance(config_version, bool) or not isinstance(config_version, int)
        or config_version <= 0
    ):  # fmt: skip
        raise ReplayRequestError("config_version must be a positive integer")
    mode = body.get("mode", "snapshot")
    rule_version = body.get("rule_version")
    if not isinstance(mode, str) or (
        rule_version is not None and not isinstance(rule_version, str)
    ):
        raise ReplayRequestError("mode and rule_version must be strings")
    return ReplayRequest(selection, mode, rule_version, config_version)


_ARCHIVE_FIELDS = tuple(field.name for field in dataclasses.fields(ArchiveRecord))


def _archive(archive: ArchiveRecord) -> dict[str, Any]:
    # Field by field, in the fields' order (_ARCHIVE_FIELDS; a test holds
    # them equal): dataclasses.asdict deep-copies every value, and was half
    # the cost of a range recompute.
    return {
        "opportunity_key": archive.opportunity_key,
        "app_id": archive.app_id,
        "placement_id": archive.placement_id,
        "opened_at_ms": archive.opened_at_ms,
        "closed_at_ms": archive.closed_at_ms,
        "close_reason": archive.close_reason,
        "outcome": archive.outcome,
        "rewarded": archive.rewarded,
        "credited_source_id": archive.credited_source_id,
        "revenue_micros": archive.revenue_micros,
        "currency": archive.currency,
        "counts": dict(archive.counts),
        "counted_events": archive.counted_events,
        "excluded_events": archive.excluded_events,
        "config_version": archive.config_version,
        "rule_version": archive.rule_version,
        "inputs_hash": archive.inputs_hash,
    }


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
    config: WindowOverride | None = None,
) -> dict[str, Any]:
    """The rules' record over every stored input (late ones too) and what differs."""
    if config is not None:
        opportunity = config.apply(opportunity)
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
            for name in DIFF_FIELDS
            if before[name] != after[name]
        },
    }


def missing_result(key: str, mode: str, missing: str) -> dict[str, Any]:
    return {"opportunity_key": key, "mode": mode, "missing": missing}
