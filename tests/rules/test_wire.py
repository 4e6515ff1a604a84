"""The wire decoders: msgspec's fast path and the field-by-field checks agree.

``mediation.wire`` decodes through msgspec and falls back to the checks
(which name the reason) only when msgspec refuses. So the fast path must
never accept what the checks refuse, nor decode anything differently.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediation.rules.model import Event, Opportunity, WaterfallEntry
from mediation.rules.ulid import encode_ulid
from mediation.wire import (
    MAX_TIME_MS,
    WireError,
    _checked_event,
    _checked_opportunity,
    decode_event,
    decode_opportunity,
    encode_event,
    encode_opportunity,
)

KEY = encode_ulid(1_764_000_000_000, bytes(range(10)))
EVENT = Event(
    "evt-1", "app_1", KEY, "impression", 1_764_000_000_100, 1_764_000_000_100,
    1_764_000_000_200, "net_alpha", 1_200, "USD", {"k": "v"},
)  # fmt: skip
OPPORTUNITY = Opportunity(
    KEY, "app_1", "interstitial", "d" * 32, 1_764_000_000_000, 1_764_000_000_000, 3, 42,
    {"country": "US"}, "dlv-1", "fill",
    (WaterfallEntry("net_alpha", 1_000, 2_000), WaterfallEntry("net_beta", 0, 3_000)),
    1_764_000_060_000, 60_000, 5_000, 2_000,
)  # fmt: skip

# Values that sit on or just past every bound the checks enforce.
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(
        [
            0,
            -1,
            1,
            2**31 - 1,
            2**31,
            2**53 - 1,
            2**53,
            2**64,
            -(2**63),
            32_767,
            32_768,
            MAX_TIME_MS,
            MAX_TIME_MS + 1,
            1.0,
            1.5,
            float("nan"),
            "",
            "x" * 128,
            "x" * 129,
            "a\x00b",
            "\ud800",
            "fill",
            "no_fill",
            "impression",
            "event.v1",
            "opportunity.v1",
            KEY,
            KEY.lower(),
            "8" + KEY[1:],
            "ZZZZZZZZZZ" + KEY[10:],
            KEY + "\n",
            [],
            {},
            [{}],
            {"a": [1, {"b": None}]},
        ]
    ),
    st.text(max_size=140),
    st.integers(),
)


def _mutate(doc: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        target = doc
        if isinstance(doc.get("delivery"), dict) and data.draw(st.booleans()):
            target = doc["delivery"]
            waterfall = target.get("waterfall")
            descend = isinstance(waterfall, list) and waterfall and isinstance(waterfall[0], dict)
            if descend and data.draw(st.booleans()):
                target = waterfall[0]
        field = data.draw(st.sampled_from([*sorted(target), "unknown_field"]))
        if data.draw(st.integers(0, 4)) == 0:
            target.pop(field, None)
        else:
            target[field] = data.draw(ODD_VALUES)
    return doc


def _same_verdict(value: bytes, fast: Any, checked: Any) -> None:
    try:
        expected = checked(value)
    except WireError as error:
        with pytest.raises(WireError) as raised:
            fast(value)
        assert raised.value.reason == error.reason
        return
    assert fast(value) == expected


DECODERS = {
    "event": (encode_event(EVENT), decode_event, _checked_event),
    "opportunity": (encode_opportunity(OPPORTUNITY), decode_opportunity, _checked_opportunity),
}


@pytest.mark.parametrize("kind", sorted(DECODERS))
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_fast_decoding_agrees_with_the_checks(kind: str, data: st.DataObject) -> None:
    valid, fast, checked = DECODERS[kind]
    doc = _mutate(json.loads(valid), data)
    value = json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")
    _same_verdict(value, fast, checked)


@pytest.mark.parametrize(
    "value",
    [None, b"", b"not json", b"[]", b"null", b'{"schema": "event.v2"}', b"\xff\xfe",
     b'{"schema": "event.v1", "schema": "event.v1"}', b"{" * 10_000],
)  # fmt: skip
def test_malformed_values_get_the_checks_reason(value: bytes | None) -> None:
    for fast, checked in (
        (decode_event, _checked_event),
        (decode_opportunity, _checked_opportunity),
    ):
        with pytest.raises(WireError) as expected:
            checked(value)
        with pytest.raises(WireError) as raised:
            fast(value)
        assert raised.value.reason == expected.value.reason


def test_round_trips() -> None:
    assert decode_event(encode_event(EVENT)) == EVENT
    assert decode_opportunity(encode_opportunity(OPPORTUNITY)) == OPPORTUNITY


@settings(max_examples=300, deadline=None)
@given(value=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_get_a_reason_never_a_crash(value: bytes) -> None:
    for fast, checked in (
        (decode_event, _checked_event),
        (decode_opportunity, _checked_opportunity),
    ):
        _same_verdict(value, fast, checked)
