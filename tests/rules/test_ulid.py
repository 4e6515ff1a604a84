from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediation.rules.ulid import (
    InvalidUlidError,
    day_of_ms,
    encode_ulid,
    is_ulid,
    ulid_day,
    ulid_time_ms,
)

MAX_TIME_MS = (1 << 48) - 1
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
VALID = encode_ulid(1_700_000_000_000, bytes(range(10)))


def _utc_ms(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp() * 1000)


def _decode(text: str) -> tuple[int, bytes]:
    """Reference Crockford decoding of the whole ULID (time, randomness)."""
    value = 0
    for ch in text:
        value = (value << 5) | CROCKFORD.index(ch)
    return value >> 80, (value & ((1 << 80) - 1)).to_bytes(10, "big")


@settings(max_examples=200, deadline=None)
@given(
    time_ms=st.integers(min_value=0, max_value=MAX_TIME_MS),
    randomness=st.binary(min_size=10, max_size=10),
)
def test_encode_then_decode_round_trips_time_and_randomness(time_ms: int, randomness: bytes):
    text = encode_ulid(time_ms, randomness)
    assert len(text) == 26
    assert is_ulid(text)
    assert ulid_time_ms(text) == time_ms
    assert _decode(text) == (time_ms, randomness)


def test_encoding_is_the_canonical_crockford_text():
    assert encode_ulid(0, bytes(10)) == "0" * 26
    assert encode_ulid(MAX_TIME_MS, b"\xff" * 10) == "7" + "Z" * 25
    assert encode_ulid(1, bytes(10)) == "0" * 9 + "1" + "0" * 16


@settings(max_examples=100, deadline=None)
@given(
    t1=st.integers(min_value=0, max_value=MAX_TIME_MS),
    t2=st.integers(min_value=0, max_value=MAX_TIME_MS),
    randomness=st.binary(min_size=10, max_size=10),
)
def test_text_order_follows_time_order(t1: int, t2: int, randomness: bytes):
    a, b = encode_ulid(t1, randomness), encode_ulid(t2, randomness)
    assert (a < b) == (t1 < t2)


def test_day_of_key_is_the_utc_day_of_its_time():
    midnight = _utc_ms(2024, 3, 1)
    assert ulid_day(encode_ulid(midnight, bytes(10))) == dt.date(2024, 3, 1)
    assert ulid_day(encode_ulid(midnight - 1, bytes(10))) == dt.date(2024, 2, 29)
    assert ulid_day(encode_ulid(midnight + 86_399_999, bytes(10))) == dt.date(2024, 3, 1)
    assert ulid_day(encode_ulid(0, bytes(10))) == dt.date(1970, 1, 1)


@settings(max_examples=200, deadline=None)
@given(time_ms=st.integers(min_value=0, max_value=253_402_300_799_999))
def test_day_of_ms_agrees_with_datetime(time_ms: int):
    instant = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=time_ms)
    assert day_of_ms(time_ms) == instant.date()


def test_rejects_lower_case():
    assert not is_ulid(VALID.lower())
    with pytest.raises(InvalidUlidError):
        ulid_time_ms(VALID.lower())


@pytest.mark.parametrize("text", [VALID[:-1], VALID + "0", "", "0" * 27])
def test_rejects_wrong_length(text: str):
    assert not is_ulid(text)
    with pytest.raises(InvalidUlidError):
        ulid_time_ms(text)


@pytest.mark.parametrize("bad_char", ["I", "L", "O", "U", "-", " ", "*"])
def test_rejects_characters_outside_crockford_alphabet(bad_char: str):
    text = VALID[:-1] + bad_char
    assert not is_ulid(text)
    with pytest.raises(InvalidUlidError):
        ulid_time_ms(text)


def test_rejects_first_character_above_seven_because_time_would_overflow_48_bits():
    assert is_ulid("7" + "Z" * 25)
    assert not is_ulid("8" + "0" * 25)


@pytest.mark.parametrize("value", [None, 42, b"0" * 26, ["0" * 26]])
def test_is_ulid_is_false_for_non_strings(value: object):
    assert not is_ulid(value)


def test_rejects_trailing_newline():
    # "$" in a Python regex also matches before a final "\n".
    assert not is_ulid(VALID + "\n")
    with pytest.raises(InvalidUlidError):
        ulid_time_ms(VALID + "\n")


@pytest.mark.parametrize("time_ms", [-1, MAX_TIME_MS + 1, 1 << 60])
def test_encode_refuses_time_outside_48_bits(time_ms: int):
    with pytest.raises(InvalidUlidError, match="outside"):
        encode_ulid(time_ms, bytes(10))


def test_encode_accepts_time_range_bounds():
    assert ulid_time_ms(encode_ulid(0, bytes(10))) == 0
    assert ulid_time_ms(encode_ulid(MAX_TIME_MS, bytes(10))) == MAX_TIME_MS


@pytest.mark.parametrize("size", [0, 9, 11, 16])
def test_encode_refuses_randomness_that_is_not_ten_bytes(size: int):
    with pytest.raises(InvalidUlidError, match="10 bytes"):
        encode_ulid(0, bytes(size))


def test_invalid_ulid_error_is_a_value_error():
    assert issubclass(InvalidUlidError, ValueError)
