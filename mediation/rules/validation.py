"""Validation of what SDKs send: sync requests and event batches.

Pure: the gateway passes the resolved app, the receive time and the accepted
key-time range. Each problem has a stable ``code`` that SDKs can switch on.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import TypeGuard

from ..errors import RefusedError
from .model import EVENT_TYPES, Event
from .records import python_class, record
from .ulid import is_ulid, ulid_time_ms_unchecked
from .waterfall import DEFAULT_SKEW_TOLERANCE_MS

__all__ = [
    "MAX_ATTRS",
    "MAX_EVENTS_PER_BATCH",
    "MAX_KEY_AGE_MS",
    "MAX_KEY_AHEAD_MS",
    "BatchEnvelope",
    "Rejection",
    "RequestInvalidError",
    "SyncRequest",
    "accepted_key_times",
    "normalise_event",
    "validate_batch_envelope",
    "validate_event",
    "validate_sync_request",
]

MAX_EVENTS_PER_BATCH = 500
MAX_ATTRS = 32
MAX_CONTEXT_KEYS = 8
_MAX_SAFE_INT = 2**53 - 1
# Client times must fall in 2000..2100: outside that a device clock is
# broken, and server_ts derived from it would overflow storage types.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 4_102_444_800_000
# An event may wait on the device this long before it is sent (35 days:
# longer than the 30 days a day stays hot, so a straggler for a day already
# tiered is possible and handled: docs/operations.md); "after sent_at" is
# tolerated only within a small jitter.
MAX_EVENT_AGE_MS = 35 * 24 * 3600 * 1000
MAX_EVENT_AHEAD_MS = 60 * 1000
# Opportunity keys an event may name. Back: as old as an event may be.
# Ahead: the gateway mints every key with its own clock, so a genuine key
# is never further ahead of another gateway's clock than the skew between
# them; anything more is a made-up key, and the worker would hold its
# events until that far-off time.
MAX_KEY_AGE_MS = MAX_EVENT_AGE_MS
MAX_KEY_AHEAD_MS = DEFAULT_SKEW_TOLERANCE_MS
# \Z, not $: "$" also matches before a trailing newline.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_SOURCE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
_CURRENCY = re.compile(r"^[A-Z]{3}\Z")
_CONTEXT_KEYS = frozenset({"country", "os", "app_version", "os_version", "device_type", "locale"})


@record
class Rejection:
    code: str
    message: str


@python_class
class RequestInvalidError(RefusedError):
    """A whole request is invalid (not one item of a batch)."""

    code = "request_invalid"

    def __init__(self, code: str, message: str, details: Mapping[str, object] | None = None):
        super().__init__(code, message)
        self.details = dict(details or {})


@record
class SyncRequest:
    placement_id: str
    device_id: str
    ts_ms: int
    context: Mapping[str, str]


@record
class BatchEnvelope:
    sent_at_ms: int
    sdk: str
    events: tuple[object, ...]


@functools.lru_cache(maxsize=4096)
def _key_time_ms(key: str) -> int | None:
    """A ULID's time, or None when ``key`` is not one.

    Cached: the events of one SDK batch mostly share a few opportunity keys,
    and decoding a key's time is the dearest check of an event.
    """
    return ulid_time_ms_unchecked(key) if is_ulid(key) else None


def accepted_key_times(received_at_ms: int) -> tuple[int, int]:
    """The opportunity-key times an event received at ``received_at_ms`` may name."""
    return received_at_ms - MAX_KEY_AGE_MS, received_at_ms + MAX_KEY_AHEAD_MS


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _timestamp(value: object) -> TypeGuard[int]:
    return _is_int(value) and MIN_TS_MS <= value <= MAX_TS_MS


def validate_sync_request(body: object) -> SyncRequest:
    """Check a ``POST /v1/requests`` body; raise ``RequestInvalidError``."""
    if not isinstance(body, dict):
        raise RequestInvalidError("invalid_body", "request body must be a JSON object")
    placement_id = body.get("placement_id")
    device_id = body.get("device_id")
    ts_ms = body.get("ts_ms")
    context = body.get("context", {})
    if not isinstance(placement_id, str) or not _ID.match(placement_id):
        raise RequestInvalidError(
            "invalid_placement_id", "placement_id must be 1..64 chars of [A-Za-z0-9_-]"
        )
    if not isinstance(device_id, str) or not 1 <= len(device_id) <= 128 or "\x00" in device_id:
        raise RequestInvalidError("invalid_device_id", "device_id must be a string of 1..128 chars")
    if not _timestamp(ts_ms):
        raise RequestInvalidError(
            "invalid_ts", "ts_ms must be an integer of epoch ms between 2000 and 2100"
        )
    if context is None:
        context = {}
    if not isinstance(context, dict) or len(context) > MAX_CONTEXT_KEYS:
        raise RequestInvalidError(
            "invalid_context", f"context must be a flat object of at most {MAX_CONTEXT_KEYS} keys"
        )
    for key, value in context.items():
        if key not in _CONTEXT_KEYS:
            raise RequestInvalidError(
                "invalid_context",
                f"context key {key[:40]!r} is not one of {sorted(_CONTEXT_KEYS)}",
            )
        if not isinstance(value, str) or len(value) > 64 or "\x00" in value:
            raise RequestInvalidError(
                "invalid_context", f"context.{key} must be a string of at most 64 chars"
            )
    return SyncRequest(placement_id, device_id, ts_ms, dict(context))


def validate_batch_envelope(body: object) -> BatchEnvelope:
    """Check a ``POST /v1/events`` envelope; items are checked one by one later."""
    if not isinstance(body, dict):
        raise RequestInvalidError("invalid_body", "request body must be a JSON object")
    sent_at = body.get("sent_at")
    sdk = body.get("sdk")
    events = body.get("events")
    if not _timestamp(sent_at):
        raise RequestInvalidError(
            "invalid_sent_at", "sent_at must be an integer of epoch ms between 2000 and 2100"
        )
    if not isinstance(sdk, str) or not 1 <= len(sdk) <= 64 or "\x00" in sdk:
        raise RequestInvalidError("invalid_sdk", "sdk must be a string of 1..64 chars")
    if not isinstance(events, list):
        raise RequestInvalidError("invalid_events", "events must be a list")
    if not events:
        raise RequestInvalidError("invalid_events", "events must not be empty")
    if len(events) > MAX_EVENTS_PER_BATCH:
        raise RequestInvalidError(
            "too_many_events",
            f"a batch holds at most {MAX_EVENTS_PER_BATCH} events, got {len(events)}",
            {"max_events": MAX_EVENTS_PER_BATCH},
        )
    return BatchEnvelope(sent_at, sdk, tuple(events))


def _attrs_problem(attrs: object) -> str | None:
    if not isinstance(attrs, dict):
        return "attrs must be a flat object"
    if len(attrs) > MAX_ATTRS:
        return f"attrs holds at most {MAX_ATTRS} keys, got {len(attrs)}"
    for key, value in attrs.items():
        if len(key) > 64:
            return "attrs keys are at most 64 chars"
        if "\x00" in key:
            return "attrs keys must not contain NUL characters"
        if isinstance(value, str):
            if len(value) > 256:
                return f"attrs.{key[:40]} is longer than 256 chars"
            if "\x00" in value:
                return f"attrs.{key[:40]} must not contain NUL characters"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return f"attrs.{key[:40]} is not a finite number"
            if value.is_integer() and abs(value) > _MAX_SAFE_INT:
                # An integer however it is written (1e16): see _canonical_attrs.
                return f"attrs.{key[:40]} is outside the safe integer range"
        elif _is_int(value):
            if abs(value) > _MAX_SAFE_INT:
                return f"attrs.{key[:40]} is outside the safe integer range"
        elif value is not None and not isinstance(value, bool):
            return f"attrs.{key[:40]} must be a string, number, boolean or null (flat)"
    return None


def _canonical_attrs(attrs: dict[str, object]) -> dict[str, object]:
    """Checked attrs with each number in the one form every store gives back.

    ``inputs_hash`` is taken over the attrs the worker holds, and replay must
    find the same values in Postgres ``jsonb`` and in Parquet (``jsonb``'s
    text). ``jsonb`` keeps numbers as decimals: it has no ``-0.0``, and an
    integral value written with an exponent (``1e16``) comes back as an
    integer. So a float with an integral value is that integer here (``-0.0``
    is ``0``, ``1.0`` is ``1``), as JSON's number model and RFC 8785 have it;
    beyond the safe range it was refused like any such integer. Any other
    finite float has a fractional part, and its shortest text, which the
    wire and ``jsonb`` keep digit for digit, reads back as the same float.
    """
    if not any(isinstance(value, float) and value.is_integer() for value in attrs.values()):
        return attrs  # the usual case: no copy
    return {
        key: int(value) if isinstance(value, float) and value.is_integer() else value
        for key, value in attrs.items()
    }


def validate_event(
    raw: object,
    *,
    app_id: str,
    sent_at_ms: int,
    received_at_ms: int,
    min_key_time_ms: int,
    max_key_time_ms: int,
) -> Event | Rejection:
    """Check one event of a batch and normalise it, or say why not."""
    fields = normalise_event(
        raw,
        app_id=app_id,
        sent_at_ms=sent_at_ms,
        received_at_ms=received_at_ms,
        min_key_time_ms=min_key_time_ms,
        max_key_time_ms=max_key_time_ms,
    )
    if isinstance(fields, Rejection):
        return fields
    return Event(**fields)  # type: ignore[arg-type]


def normalise_event(
    raw: object,
    *,
    app_id: str,
    sent_at_ms: int,
    received_at_ms: int,
    min_key_time_ms: int,
    max_key_time_ms: int,
) -> dict[str, object] | Rejection:
    """``validate_event`` returning the fields as a plain dict (``event_as_dict``'s shape).

    The gateway's ingest path encodes these straight to the wire: building
    the frozen ``Event`` first would cost more than all the checks together.
    ``server_ts = received_at - (sent_at - ts)`` corrects the device clock:
    ``sent_at`` and ``ts`` come from the same clock, so its skew cancels.
    """
    if not isinstance(raw, dict):
        return Rejection("invalid_event", "each event must be a JSON object")
    event_id = raw.get("event_id")
    if not isinstance(event_id, str) or not _ID.match(event_id):
        return Rejection("invalid_event_id", "event_id must be 1..64 chars of [A-Za-z0-9_-]")
    key = raw.get("opportunity_key")
    key_time = _key_time_ms(key) if isinstance(key, str) else None
    if key_time is None:
        return Rejection("invalid_opportunity_key", "opportunity_key must be a canonical ULID")
    if key_time < min_key_time_ms:
        return Rejection(
            "opportunity_key_out_of_range",
            "opportunity_key is older than the retention: its opportunity is no longer kept",
        )
    if key_time > max_key_time_ms:
        return Rejection(
            "opportunity_key_out_of_range",
            f"opportunity_key is {(key_time - received_at_ms) // 1000} s ahead of the "
            f"gateway's clock (at most {(max_key_time_ms - received_at_ms) // 1000} s): keys "
            "come from POST /v1/requests",
        )
    event_type = raw.get("type")
    if event_type not in EVENT_TYPES:
        return Rejection("unknown_type", f"type must be one of {', '.join(EVENT_TYPES)}")
    ts = raw.get("ts")
    if not _timestamp(ts):
        return Rejection("invalid_ts", "ts must be an integer of epoch ms between 2000 and 2100")
    source_id = raw.get("source_id")
    if source_id is not None and (
        not isinstance(source_id, str) or not _SOURCE_ID.match(source_id)
    ):
        return Rejection("invalid_source_id", "source_id must be 1..64 chars of [A-Za-z0-9_.:-]")
    revenue = raw.get("revenue_micros")
    if revenue is not None and (not _is_int(revenue) or not 0 <= revenue <= _MAX_SAFE_INT):
        return Rejection("invalid_revenue", "revenue_micros must be an integer >= 0")
    currency = raw.get("currency")
    if currency is not None and (not isinstance(currency, str) or not _CURRENCY.match(currency)):
        return Rejection("invalid_currency", "currency must be an ISO 4217 code like USD")
    if revenue is not None and currency is None:
        return Rejection("invalid_currency", "currency is required with revenue_micros")
    attrs = raw.get("attrs", {})
    if attrs is None:
        attrs = {}
    problem = _attrs_problem(attrs)
    if problem is not None:
        return Rejection("invalid_attrs", problem)
    if not _EVENT_FIELDS.issuperset(raw):
        unknown = sorted(set(raw) - _EVENT_FIELDS)
        return Rejection("unknown_field", f"unknown field(s): {', '.join(unknown)[:200]}")
    age_ms = sent_at_ms - ts
    if not -MAX_EVENT_AHEAD_MS <= age_ms <= MAX_EVENT_AGE_MS:
        return Rejection(
            "invalid_ts",
            "ts must be at most 35 days before sent_at and not after it "
            "(both from the device clock)",
        )
    return {
        "event_id": event_id,
        "app_id": app_id,
        "opportunity_key": key,
        "type": event_type,
        "ts_ms": ts,
        "server_ts_ms": received_at_ms - age_ms,
        "received_at_ms": received_at_ms,
        "source_id": source_id,
        "revenue_micros": revenue,
        "currency": currency,
        "attrs": _canonical_attrs(attrs),
    }


_EVENT_FIELDS = frozenset(
    {
        "event_id",
        "opportunity_key",
        "type",
        "ts",
        "source_id",
        "revenue_micros",
        "currency",
        "attrs",
    }
)
