"""What the dataflow hands its sinks, besides the rules' own outputs."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, replace

import orjson

from mediation.rules.model import ClosedOpportunity, DeadLetter, LateEvent, OrphanEvents
from mediation.rules.ulid import day_of_ms, is_ulid, ulid_day
from mediation.wire import encode_event, encode_opportunity, event_to_dict

__all__ = [
    "DeadLetterRecord",
    "SinkItem",
    "dead_letter_from_rules",
    "encode_dead_letter",
    "unwritable",
]

DEADLETTER_SCHEMA = "deadletter.v1"
_ARRIVAL_FIELDS = frozenset({"server_ts_ms", "received_at_ms"})


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A record the pipeline could not process, with where it came from.

    ``id`` is derived from the source position (or, for refusals by the
    rules, from the refused content), so re-processing the same input lands
    the same dead letter once.
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


SinkItem = ClosedOpportunity | LateEvent | OrphanEvents | DeadLetterRecord


def dead_letter_from_rules(
    letter: DeadLetter, fallback_day_ms: int, events_topic: str | None = None
) -> DeadLetterRecord:
    """A refusal by the rules as a dead letter, with where its event came from.

    The source position and the message's original bytes come with the
    refused event (``mediation.wire.decode_event``; ``events_topic`` names
    the topic it was read from), so a re-drive sends exactly what arrived.
    A refusal without an event read from Kafka (older snapshots, the
    rules' own tests) keeps the event's fields as its payload. The id is
    the content's (``rule:...``), so a refusal made again, by the worker
    after a restart or by the sink, lands once.
    """
    payload = orjson.dumps(dict(letter.payload), option=orjson.OPT_SORT_KEYS)
    # The id ignores when a copy arrived, so resends of one refused event
    # land as one dead letter.
    identity = {k: v for k, v in letter.payload.items() if k not in _ARRIVAL_FIELDS}
    digest = hashlib.sha256(
        letter.reason.encode() + b"\0" + orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()[:32]
    key = letter.opportunity_key
    day = ulid_day(key) if key is not None and is_ulid(key) else day_of_ms(fallback_day_ms)
    app_id = letter.payload.get("app_id")
    record = DeadLetterRecord(
        id=f"rule:{digest}",
        day=day,
        reason=letter.reason,
        detail=letter.detail,
        app_id=app_id if isinstance(app_id, str) else None,
        opportunity_key=key,
        source_topic=None,
        source_partition=None,
        source_offset=None,
        payload=payload,
    )
    event = letter.event
    offset = getattr(event, "source_offset", None)  # absent in older snapshots
    if event is None or offset is None or events_topic is None:
        return record
    original = getattr(event, "source_bytes", None)
    return replace(
        record,
        source_topic=events_topic,
        source_partition=event.source_partition,
        source_offset=offset,
        payload=original if original is not None else encode_event(event),
    )


def encode_dead_letter(record: DeadLetterRecord) -> bytes:
    """The ``deadletter.v1`` topic value: reason, source position, original bytes."""
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


def unwritable(item: SinkItem, error: Exception) -> DeadLetterRecord:
    """A record Postgres refused (bad in itself), as a dead letter."""
    if isinstance(item, DeadLetterRecord):
        # A dead letter that cannot be stored: keep only what surely fits.
        return DeadLetterRecord(
            f"{item.id}:unwritable",
            item.day,
            "unwritable",
            str(error)[:500],
            None,
            None,
            item.source_topic,
            item.source_partition,
            item.source_offset,
            item.payload,
        )
    # Everything needed to re-drive the item: the opportunity and every event
    # as they travel on Kafka.
    payload: dict[str, object]
    if isinstance(item, ClosedOpportunity):
        key = item.opportunity.opportunity_key
        payload = {
            "kind": "closed_opportunity",
            "opportunity": orjson.loads(encode_opportunity(item.opportunity)),
            "events": [event_to_dict(s.event) for s in item.events],
        }
    elif isinstance(item, LateEvent):
        key = item.stored.event.opportunity_key
        payload = {"kind": "late_event", "events": [event_to_dict(item.stored.event)]}
    else:
        key = item.opportunity_key
        payload = {"kind": "orphan_events", "events": [event_to_dict(s.event) for s in item.events]}
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(body).hexdigest()[:32]
    return DeadLetterRecord(
        f"unwritable:{digest}",
        ulid_day(key),
        "unwritable",
        str(error)[:500],
        None,
        key,
        None,
        None,
        None,
        body,
    )
