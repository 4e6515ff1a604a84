"""Kafka message values: JSON (orjson) with a ``schema`` version field.

Opportunities and events: the gateway encodes, the dataflow decodes.
Decoding checks every field it relies on, because a topic can carry
anything (an old producer, a manual ``kcat`` write): a bad message raises
``WireError`` with a stable reason code and goes to the dead-letter path.
Dead letters (``deadletter.v1``, at the end): the dataflow encodes, and
whoever reads the topic decodes them here too.

Decoding runs twice as fast through msgspec: the wire shape is declared
once as ``msgspec.Struct`` types with the same bounds as the checks below,
validated in C. Whatever msgspec refuses is decoded again by the checks
below, which say exactly why (the reason codes the dead-letter path
records), so msgspec only ever decides the happy path; a test holds the
two to the same verdict and values.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import msgspec
import orjson

from mediation.errors import InputError
from mediation.rules.model import EVENT_TYPES, Event, Opportunity, WaterfallEntry, event_as_dict
from mediation.rules.ulid import ULID_PATTERN, encode_ulid, is_ulid, ulid_time_ms_unchecked

__all__ = [
    "DEADLETTER_SCHEMA",
    "EVENT_SCHEMA",
    "MAX_TIME_MS",
    "OPPORTUNITY_SCHEMA",
    "DeadLetterRecord",
    "WireError",
    "decode_dead_letter",
    "decode_event",
    "decode_opportunity",
    "encode_dead_letter",
    "encode_event",
    "encode_event_fields",
    "encode_opportunity",
    "event_to_dict",
]

# Any instant the storage types hold comfortably (years 1970..2500).
MAX_TIME_MS = 16_725_225_600_000
_MAX_INT4 = 2**31 - 1
_MAX_REVENUE_MICROS = 2**53 - 1

OPPORTUNITY_SCHEMA = "opportunity.v1"
EVENT_SCHEMA = "event.v1"
DEADLETTER_SCHEMA = "deadletter.v1"


class WireError(InputError):
    """A message value cannot be decoded; ``reason`` is a stable code."""

    code = "wire_invalid"

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def encode_opportunity(opportunity: Opportunity) -> bytes:
    return orjson.dumps(
        {
            "schema": OPPORTUNITY_SCHEMA,
            "opportunity_key": opportunity.opportunity_key,
            "app_id": opportunity.app_id,
            "placement_id": opportunity.placement_id,
            "device_hash": opportunity.device_hash,
            "ts_ms": opportunity.ts_ms,
            "client_ts_ms": opportunity.client_ts_ms,
            "config_version": opportunity.config_version,
            "rollout_bucket": opportunity.rollout_bucket,
            "context": dict(opportunity.context),
            "closure_window_ms": opportunity.closure_window_ms,
            "grace_ms": opportunity.grace_ms,
            "skew_tolerance_ms": opportunity.skew_tolerance_ms,
            "delivery": {
                "delivery_id": opportunity.delivery_id,
                "status": opportunity.status,
                "expires_at_ms": opportunity.expires_at_ms,
                "waterfall": [
                    {
                        "source_id": e.source_id,
                        "floor_micros": e.floor_micros,
                        "timeout_ms": e.timeout_ms,
                    }
                    for e in opportunity.waterfall
                ],
            },
        }
    )


def event_to_dict(event: Event) -> dict[str, Any]:
    document: dict[str, Any] = event_as_dict(event)
    document["schema"] = EVENT_SCHEMA
    return document


def encode_event(event: Event) -> bytes:
    return orjson.dumps(event_to_dict(event))


def encode_event_fields(fields: Mapping[str, object]) -> bytes:
    """``encode_event`` for fields in ``event_as_dict``'s shape (the ingest hot path)."""
    return orjson.dumps({**fields, "schema": EVENT_SCHEMA})


def _load(value: bytes | None, schema: str) -> dict[str, Any]:
    if value is None:
        raise WireError("empty_message", "message has no value")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise WireError("invalid_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise WireError("invalid_message", "value is not a JSON object")
    found = doc.get("schema")
    if found != schema:
        raise WireError("unknown_schema", f"expected schema {schema!r}, got {found!r}")
    return doc


def _int(doc: Mapping[str, Any], key: str, low: int = 0, high: int = _MAX_INT4) -> int:
    """An integer in ``low..high`` (default: what a Postgres ``integer`` holds)."""
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireError("invalid_field", f"{key} must be an integer")
    if not low <= value <= high:
        raise WireError("invalid_field", f"{key} must be within {low}..{high}")
    return value


def _time(doc: Mapping[str, Any], key: str) -> int:
    return _int(doc, key, 0, MAX_TIME_MS)


def _opt_str(doc: Mapping[str, Any], key: str) -> str | None:
    return None if doc.get(key) is None else _str(doc, key)


def _str(doc: Mapping[str, Any], key: str, max_chars: int = 128) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars or "\x00" in value:
        raise WireError(
            "invalid_field", f"{key} must be a string of 1..{max_chars} chars without NUL"
        )
    return value


def _shared(value: str) -> str:
    """One copy of a low-cardinality string (app, placement, source, type...).

    The worker holds every open opportunity and its events in memory; each
    decoded message would otherwise carry its own copies of the same few
    names.
    """
    return sys.intern(value)


def _shared_opt(value: str | None) -> str | None:
    return None if value is None else sys.intern(value)


# Decoded values the worker holds many equal copies of while opportunities
# are open, shared instead: contexts and waterfalls repeat per app and
# config, and most events have no attrs. Records are immutable, so sharing
# is safe; each cache stops growing at _SHARED_LIMIT entries (hostile
# variety then just gets its own copies).
_SHARED_LIMIT = 10_000
_CONTEXTS: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
_WATERFALLS: dict[tuple[tuple[str, int, int], ...], tuple[WaterfallEntry, ...]] = {}
_EMPTY_OBJECT: dict[str, Any] = {}


_SETTINGS: dict[int, int] = {}  # an opportunity's window, grace and skew, from its config


def _shared_setting(value: int) -> int:
    # Integers above 256 are objects of their own (32 bytes each).
    return _SETTINGS.get(value) or _share(_SETTINGS, value, value)


def _share(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) < _SHARED_LIMIT:
        cache[key] = value
    return value


def _shared_context(context: dict[str, Any]) -> dict[str, Any]:
    if not context:
        return _EMPTY_OBJECT
    signature = tuple(context.items())
    if all(type(value) is str for _key, value in signature):  # hashable, and 1 != True
        shared = _CONTEXTS.get(signature)
        if shared is not None:
            return shared
    else:
        signature = ()
    interned = {
        sys.intern(k): sys.intern(v) if isinstance(v, str) and len(v) <= 32 else v
        for k, v in context.items()
    }
    return _share(_CONTEXTS, signature, interned) if signature else interned


def _shared_waterfall(entries: tuple[tuple[str, int, int], ...]) -> tuple[WaterfallEntry, ...]:
    shared = _WATERFALLS.get(entries)
    if shared is None:
        waterfall = tuple(WaterfallEntry(sys.intern(s), f, t) for s, f, t in entries)
        shared = _share(_WATERFALLS, entries, waterfall)
    return shared


def _key(doc: Mapping[str, Any]) -> str:
    key = _str(doc, "opportunity_key")
    if not is_ulid(key) or ulid_time_ms_unchecked(key) > MAX_TIME_MS:
        raise WireError("invalid_field", "opportunity_key is not a ULID of the years 1970..2500")
    # Interned: an opportunity and all its events then hold one copy of the
    # key while it is open (interned strings are freed with their last use).
    return sys.intern(key)


def _checked_opportunity(value: bytes | None) -> Opportunity:
    doc = _load(value, OPPORTUNITY_SCHEMA)
    key = _key(doc)
    delivery = doc.get("delivery")
    if not isinstance(delivery, dict):
        raise WireError("invalid_field", "delivery must be an object")
    status = delivery.get("status")
    if status not in ("fill", "no_fill"):
        raise WireError("invalid_field", "delivery.status must be fill or no_fill")
    raw_waterfall = delivery.get("waterfall")
    if not isinstance(raw_waterfall, list):
        raise WireError("invalid_field", "delivery.waterfall must be a list")
    entries = []
    for entry in raw_waterfall:
        if not isinstance(entry, dict):
            raise WireError("invalid_field", "waterfall entries must be objects")
        entries.append(
            (
                _str(entry, "source_id"),
                _int(entry, "floor_micros", 0, _MAX_REVENUE_MICROS),
                _int(entry, "timeout_ms"),
            )
        )
    context = doc.get("context") or {}
    if not isinstance(context, dict):
        raise WireError("invalid_field", "context must be an object")
    return Opportunity(
        opportunity_key=key,
        app_id=_shared(_str(doc, "app_id")),
        placement_id=_shared(_str(doc, "placement_id")),
        device_hash=_str(doc, "device_hash"),
        ts_ms=_time(doc, "ts_ms"),
        client_ts_ms=_time(doc, "client_ts_ms"),
        config_version=_int(doc, "config_version"),
        rollout_bucket=_int(doc, "rollout_bucket", 0, 32_767),
        context=_shared_context(context),
        delivery_id=_str(delivery, "delivery_id"),
        status="fill" if status == "fill" else "no_fill",  # shared constants
        waterfall=_shared_waterfall(tuple(entries)),
        expires_at_ms=_time(delivery, "expires_at_ms"),
        closure_window_ms=_shared_setting(_int(doc, "closure_window_ms")),
        grace_ms=_shared_setting(_int(doc, "grace_ms")),
        skew_tolerance_ms=_shared_setting(_int(doc, "skew_tolerance_ms")),
    )


def _checked_event(
    value: bytes | None, source_partition: int | None = None, source_offset: int | None = None
) -> Event:
    doc = _load(value, EVENT_SCHEMA)
    key = _key(doc)
    event_type = doc.get("type")
    if event_type not in EVENT_TYPES:
        raise WireError("invalid_field", f"unknown event type {event_type!r}")
    revenue = doc.get("revenue_micros")
    if revenue is not None:
        revenue = _int(doc, "revenue_micros", 0, _MAX_REVENUE_MICROS)
    attrs = doc.get("attrs") or _EMPTY_OBJECT
    if not isinstance(attrs, dict):
        raise WireError("invalid_field", "attrs must be an object")
    return Event(
        event_id=_str(doc, "event_id"),
        app_id=_shared(_str(doc, "app_id")),
        opportunity_key=key,
        type=_shared(event_type),
        ts_ms=_time(doc, "ts_ms"),
        server_ts_ms=_time(doc, "server_ts_ms"),
        received_at_ms=_time(doc, "received_at_ms"),
        source_id=_shared_opt(_opt_str(doc, "source_id")),
        revenue_micros=revenue,
        currency=_shared_opt(_opt_str(doc, "currency")),
        attrs=attrs,
        source_partition=source_partition,
        source_offset=source_offset,
    )


# --- the fast path: the same checks, declared for msgspec ------------------

# No NUL either, but that is checked after decoding (in one joined string): a regex
# per string would cost more than the whole rest of the decode.
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Key = Annotated[str, msgspec.Meta(pattern=ULID_PATTERN.pattern)]
_Time = Annotated[int, msgspec.Meta(ge=0, le=MAX_TIME_MS)]
_Int4 = Annotated[int, msgspec.Meta(ge=0, le=_MAX_INT4)]
_Micros = Annotated[int, msgspec.Meta(ge=0, le=_MAX_REVENUE_MICROS)]
_EventType = Literal["loaded", "load_failed", "impression", "click", "reward", "closed", "error"]
# A ULID's first 10 characters are its time, and Crockford's alphabet is in
# ASCII order: comparing them as text compares the times.
_MAX_KEY_TIME = encode_ulid(MAX_TIME_MS, bytes(10))[:10]


class _EventWire(msgspec.Struct, gc=False):
    schema: Literal["event.v1"]
    event_id: _Text
    app_id: _Text
    opportunity_key: _Key
    type: _EventType
    ts_ms: _Time
    server_ts_ms: _Time
    received_at_ms: _Time
    source_id: _Text | None = None
    revenue_micros: _Micros | None = None
    currency: _Text | None = None
    attrs: dict[str, Any] | None = None


class _WaterfallWire(msgspec.Struct, gc=False):
    source_id: _Text
    floor_micros: _Micros
    timeout_ms: _Int4


class _DeliveryWire(msgspec.Struct, gc=False):
    delivery_id: _Text
    status: Literal["fill", "no_fill"]
    waterfall: list[_WaterfallWire]
    expires_at_ms: _Time


class _OpportunityWire(msgspec.Struct, gc=False):
    schema: Literal["opportunity.v1"]
    opportunity_key: _Key
    app_id: _Text
    placement_id: _Text
    device_hash: _Text
    ts_ms: _Time
    client_ts_ms: _Time
    config_version: _Int4
    rollout_bucket: Annotated[int, msgspec.Meta(ge=0, le=32_767)]
    delivery: _DeliveryWire
    closure_window_ms: _Int4
    grace_ms: _Int4
    skew_tolerance_ms: _Int4
    context: dict[str, Any] | None = None


_EVENT_DECODER = msgspec.json.Decoder(_EventWire)
_OPPORTUNITY_DECODER = msgspec.json.Decoder(_OpportunityWire)
_intern = sys.intern


def decode_event(
    value: bytes | None, source_partition: int | None = None, source_offset: int | None = None
) -> Event:
    """An event from its message value.

    Given the message's position (the dataflow), the event remembers it, and
    the value too unless ``encode_event`` gives it back (what the gateway
    writes does): a dead letter about the event then carries both.
    """
    event = _decode_event(value, source_partition, source_offset)
    if source_offset is not None and value is not None and encode_event(event) != value:
        return replace(event, source_bytes=bytes(value))
    return event


def _decode_event(
    value: bytes | None, source_partition: int | None, source_offset: int | None
) -> Event:
    try:
        wire = _EVENT_DECODER.decode(value)  # type: ignore[arg-type]
    except (msgspec.DecodeError, TypeError):
        return _checked_event(value, source_partition, source_offset)  # says what is wrong
    key, source_id, currency = wire.opportunity_key, wire.source_id, wire.currency
    if key[:10] > _MAX_KEY_TIME or "\x00" in f"{wire.event_id}{wire.app_id}{source_id}{currency}":
        return _checked_event(value, source_partition, source_offset)
    return Event(
        wire.event_id,
        _intern(wire.app_id),
        _intern(key),
        _intern(wire.type),
        wire.ts_ms,
        wire.server_ts_ms,
        wire.received_at_ms,
        None if source_id is None else _intern(source_id),
        wire.revenue_micros,
        None if currency is None else _intern(currency),
        wire.attrs or _EMPTY_OBJECT,
        source_partition,
        source_offset,
    )


def decode_opportunity(
    value: bytes | None, source_partition: int | None = None, source_offset: int | None = None
) -> Opportunity:
    """An opportunity from its message value; given its position (the dataflow), it keeps it."""
    try:
        wire = _OPPORTUNITY_DECODER.decode(value)  # type: ignore[arg-type]
    except (msgspec.DecodeError, TypeError):
        checked = _checked_opportunity(value)  # says exactly what is wrong
        return replace(checked, source_partition=source_partition, source_offset=source_offset)
    key, delivery = wire.opportunity_key, wire.delivery
    if (
        key[:10] > _MAX_KEY_TIME
        or "\x00" in f"{wire.app_id}{wire.placement_id}{wire.device_hash}{delivery.delivery_id}"
        or any("\x00" in entry.source_id for entry in delivery.waterfall)
    ):
        checked = _checked_opportunity(value)
        return replace(checked, source_partition=source_partition, source_offset=source_offset)
    return Opportunity(
        _intern(key),
        _intern(wire.app_id),
        _intern(wire.placement_id),
        wire.device_hash,
        wire.ts_ms,
        wire.client_ts_ms,
        wire.config_version,
        wire.rollout_bucket,
        _shared_context(wire.context) if wire.context else _EMPTY_OBJECT,
        delivery.delivery_id,
        "fill" if delivery.status == "fill" else "no_fill",
        _shared_waterfall(
            tuple(
                (entry.source_id, entry.floor_micros, entry.timeout_ms)
                for entry in delivery.waterfall
            )
        ),
        delivery.expires_at_ms,
        _shared_setting(wire.closure_window_ms),
        _shared_setting(wire.grace_ms),
        _shared_setting(wire.skew_tolerance_ms),
        source_partition,
        source_offset,
    )


# --- dead letters ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A record the pipeline could not process, with where it came from.

    What a ``deadletter.v1`` message and a ``dead_letters`` row hold. ``id``
    is derived from the source position (or, for refusals by the rules,
    from the refused content), so re-processing the same input lands the
    same dead letter once.
    """

    id: str
    day: dt.date
    reason: str
    detail: str
    app_id: str | None
    opportunity_key: str | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    payload: bytes


def encode_dead_letter(record: DeadLetterRecord) -> bytes:
    """The ``deadletter.v1`` topic value: reason, source position, original bytes.

    A payload that is JSON travels as JSON (``payload_encoding`` ``json``),
    anything else as hex.
    """
    try:
        original: object = orjson.loads(record.payload)
        encoding = "json"
    except orjson.JSONDecodeError:
        original = record.payload.hex()
        encoding = "hex"
    return orjson.dumps(
        {
            "schema": DEADLETTER_SCHEMA,
            "id": record.id,
            "day": record.day.isoformat(),
            "reason": record.reason,
            "detail": record.detail,
            "app_id": record.app_id,
            "opportunity_key": record.opportunity_key,
            "source": {
                "topic": record.source_topic,
                "partition": record.source_partition,
                "offset": record.source_offset,
            },
            "payload_encoding": encoding,
            "payload": original,
        }
    )


def _text(doc: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise WireError("invalid_field", f"{key} must be a string")
    return value


def _opt_int(doc: Mapping[str, Any], key: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireError("invalid_field", f"{key} must be an integer")
    return value


def decode_dead_letter(value: bytes | None) -> DeadLetterRecord:
    """A dead letter from its ``deadletter.v1`` message value.

    A ``json`` payload comes back as compact JSON text: the original bytes
    whenever they were compact JSON, as everything this pipeline writes is.
    """
    doc = _load(value, DEADLETTER_SCHEMA)
    day_text = _text(doc, "day")
    try:
        day = dt.date.fromisoformat(str(day_text))
    except ValueError:
        raise WireError("invalid_field", f"day must be an ISO date, got {day_text!r}") from None
    source = doc.get("source")
    if not isinstance(source, dict):
        raise WireError("invalid_field", "source must be an object")
    encoding, payload = doc.get("payload_encoding"), doc.get("payload")
    if encoding == "json" and "payload" in doc:
        original = orjson.dumps(payload)
    elif encoding == "hex" and isinstance(payload, str):
        try:
            original = bytes.fromhex(payload)
        except ValueError:
            raise WireError("invalid_field", "payload is not hex") from None
    else:
        raise WireError("invalid_field", "payload_encoding must be json, or hex with a string")
    return DeadLetterRecord(
        id=str(_text(doc, "id")),
        day=day,
        reason=str(_text(doc, "reason")),
        detail=str(_text(doc, "detail")),
        app_id=_text(doc, "app_id", optional=True),
        opportunity_key=_text(doc, "opportunity_key", optional=True),
        source_topic=_text(source, "topic", optional=True),
        source_partition=_opt_int(source, "partition"),
        source_offset=_opt_int(source, "offset"),
        payload=original,
    )
