"""What the dataflow hands its sinks, besides the rules' own outputs.

``DeadLetterRecord`` and its topic format are ``mediation.wire``'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import orjson

from mediation.rules.model import ClosedOpportunity, DeadLetter, LateEvent, OrphanEvents
from mediation.rules.ulid import day_of_ms, is_ulid, ulid_day
from mediation.wire import DeadLetterRecord, encode_event, encode_opportunity, event_to_dict

__all__ = ["SinkItem", "dead_letter_from_rules", "unwritable"]

_ARRIVAL_FIELDS = frozenset({"server_ts_ms", "received_at_ms"})


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
