"""The ``deadletter.v1`` topic format (``mediation/wire.py``): encoded as before, decoded back."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from mediation.wire import DeadLetterRecord, WireError, decode_dead_letter, encode_dead_letter

BINARY = DeadLetterRecord(
    id="t.events.v1:1:42",
    day=dt.date(2026, 11, 25),
    reason="invalid_json",
    detail="unexpected character",
    app_id=None,
    opportunity_key=None,
    source_topic="t.events.v1",
    source_partition=1,
    source_offset=42,
    payload=b"\x00\xff{oops",
)
JSON = DeadLetterRecord(
    id="rule:0123456789abcdef0123456789abcdef",
    day=dt.date(2026, 11, 25),
    reason="opportunity_app_mismatch",
    detail="event app 'b' does not own opportunity of app 'a'",
    app_id="b",
    opportunity_key="01KAZ3K2V3M7ZT2E8X1Q0JD6MS",
    source_topic=None,
    source_partition=None,
    source_offset=None,
    payload=b'{"app_id":"b","event_id":"e1","type":"click"}',
)


def test_a_dead_letter_is_encoded_field_for_field() -> None:
    assert encode_dead_letter(BINARY) == (
        b'{"schema":"deadletter.v1","id":"t.events.v1:1:42","day":"2026-11-25",'
        b'"reason":"invalid_json","detail":"unexpected character","app_id":null,'
        b'"opportunity_key":null,"source":{"topic":"t.events.v1","partition":1,"offset":42},'
        b'"payload_encoding":"hex","payload":"00ff7b6f6f7073"}'
    )
    message = orjson.loads(encode_dead_letter(JSON))
    assert message["payload_encoding"] == "json"
    assert message["payload"] == {"app_id": "b", "event_id": "e1", "type": "click"}


@pytest.mark.parametrize("record", [BINARY, JSON], ids=["hex", "json"])
def test_a_dead_letter_decodes_back_to_itself(record: DeadLetterRecord) -> None:
    assert decode_dead_letter(encode_dead_letter(record)) == record


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"schema": "event.v1"}, "unknown_schema"),
        ({"day": "25.11.2026"}, "invalid_field"),
        ({"reason": None}, "invalid_field"),
        ({"source": [1]}, "invalid_field"),
        ({"source": {"topic": "t", "partition": "1", "offset": 2}}, "invalid_field"),
        ({"payload_encoding": "base64"}, "invalid_field"),
        ({"payload": "zz"}, "invalid_field"),
    ],
)
def test_a_bad_dead_letter_message_says_why(change: dict[str, object], reason: str) -> None:
    message = {**orjson.loads(encode_dead_letter(BINARY)), **change}
    with pytest.raises(WireError) as refused:
        decode_dead_letter(orjson.dumps(message))
    assert refused.value.reason == reason


def test_not_json_is_refused() -> None:
    with pytest.raises(WireError, match="invalid_json"):
        decode_dead_letter(b"{")
