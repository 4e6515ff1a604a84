"""Kafka messages -> rules records, or dead letters that say why not."""

from __future__ import annotations

from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage

from mediation.rules.model import Event, Opportunity
from mediation.rules.ulid import day_of_ms, is_ulid, ulid_day, ulid_time_ms
from mediation.settings import Topics
from mediation.wire import (
    MAX_TIME_MS,
    DeadLetterRecord,
    WireError,
    decode_event,
    decode_opportunity,
)

from .closing import bucket_of

__all__ = ["Decoded", "decode_message", "kafka_error_letter"]

# (bucket key, record): keyed as the stateful step takes it (see
# ``dataflows/closing.py`` for buckets: the partition read from is part of
# the key), so no extra step re-shapes messages.
Decoded = tuple[str, Opportunity | Event]


def _message_day_ms(message: KafkaSourceMessage[bytes | None, bytes | None]) -> int:
    # The broker timestamp is part of the message, so the dead letter's day is
    # the same every time this message is (re)processed.
    if message.timestamp is not None and 0 < message.timestamp[1] <= MAX_TIME_MS:
        return message.timestamp[1]
    return 0


def _letter(
    message: KafkaSourceMessage[bytes | None, bytes | None], reason: str, detail: str
) -> DeadLetterRecord:
    key_text = message.key.decode("utf-8", "replace") if message.key else None
    key = key_text if is_ulid(key_text) and ulid_time_ms(key_text) <= MAX_TIME_MS else None
    return DeadLetterRecord(
        id=f"{message.topic}:{message.partition}:{message.offset}",
        day=ulid_day(key) if key else day_of_ms(_message_day_ms(message)),
        reason=reason,
        detail=detail[:1000],
        app_id=None,
        opportunity_key=key,
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        payload=message.value or b"",
    )


def decode_message(
    topics: Topics, message: KafkaSourceMessage[bytes | None, bytes | None]
) -> Decoded | DeadLetterRecord:
    try:
        record: Opportunity | Event
        if message.topic == topics.opportunities:
            record = decode_opportunity(message.value, message.partition, message.offset)
        elif message.topic == topics.events:
            # The position (and bytes) travel with the event for any dead letter about it.
            record = decode_event(message.value, message.partition, message.offset)
        else:
            return _letter(message, "unknown_topic", f"no decoder for topic {message.topic!r}")
    except WireError as exc:
        return _letter(message, exc.reason, exc.detail)
    return (bucket_of(record.opportunity_key, message.partition), record)


def kafka_error_letter(error: KafkaError[bytes | None, bytes | None]) -> DeadLetterRecord:
    return _letter(error.msg, "kafka_error", str(error.err))
