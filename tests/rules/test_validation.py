from __future__ import annotations

import datetime as dt
import math

import pytest

from mediation.rules.model import Event, event_as_dict
from mediation.rules.ulid import encode_ulid
from mediation.rules.validation import (
    MAX_ATTRS,
    MAX_EVENT_AGE_MS,
    MAX_EVENTS_PER_BATCH,
    MAX_TS_MS,
    MIN_TS_MS,
    BatchEnvelope,
    Rejection,
    RequestInvalidError,
    SyncRequest,
    normalise_event,
    validate_batch_envelope,
    validate_event,
    validate_sync_request,
)
from mediation.wire import decode_event, encode_event, encode_event_fields

T0_MS = 1_700_000_000_000
MAX_SAFE_INT = 2**53 - 1
SENT_AT = T0_MS + 10_000
RECEIVED_AT = T0_MS + 70_000  # the device clock is a minute behind


def _validate(raw: object, **overrides: int) -> Event | Rejection:
    kwargs = {
        "app_id": "app_1",
        "sent_at_ms": SENT_AT,
        "received_at_ms": RECEIVED_AT,
        "min_key_time_ms": T0_MS - 86_400_000,
        "max_key_time_ms": T0_MS + 86_400_000,
        **overrides,
    }
    return validate_event(raw, **kwargs)  # type: ignore[arg-type]


def _code(result: Event | Rejection) -> str:
    assert isinstance(result, Rejection), result
    assert result.message
    return result.code


# --- validate_event ------------------------------------------------------------------------


def test_good_event_is_accepted_and_normalised(make_raw_event):
    raw = make_raw_event()
    event = _validate(raw)
    assert isinstance(event, Event)
    assert event.event_id == raw["event_id"]
    assert event.app_id == "app_1"
    assert event.opportunity_key == raw["opportunity_key"]
    assert event.type == "impression"
    assert event.ts_ms == raw["ts"]
    assert event.received_at_ms == RECEIVED_AT
    assert event.source_id == "net_a"
    assert event.revenue_micros == 1_250
    assert event.currency == "USD"
    assert event.attrs == raw["attrs"]


def test_server_ts_is_received_at_minus_send_delay_on_the_device_clock(make_raw_event):
    raw = make_raw_event(ts=SENT_AT - 2_500)
    event = _validate(raw)
    assert isinstance(event, Event)
    assert event.server_ts_ms == RECEIVED_AT - (SENT_AT - raw["ts"])
    assert event.server_ts_ms == RECEIVED_AT - 2_500
    assert event.ts_ms == SENT_AT - 2_500  # the client ts is kept as sent


def test_hot_path_fields_encode_exactly_like_the_event(make_raw_event):
    # The gateway encodes normalise_event's dict without building an Event;
    # the worker must decode the very same message either way.
    for raw in (make_raw_event(), make_raw_event(type="loaded", attrs={"n": 1.5, "x": None})):
        fields = normalise_event(
            raw,
            app_id="app_1",
            sent_at_ms=SENT_AT,
            received_at_ms=RECEIVED_AT,
            min_key_time_ms=T0_MS - 86_400_000,
            max_key_time_ms=T0_MS + 86_400_000,
        )
        event = _validate(raw)
        assert isinstance(fields, dict) and isinstance(event, Event)
        assert fields == event_as_dict(event)
        assert encode_event_fields(fields) == encode_event(event)
        assert decode_event(encode_event_fields(fields)) == event


def test_app_comes_from_the_caller_not_the_body(make_raw_event):
    event = _validate(make_raw_event(), app_id="app_from_key")
    assert isinstance(event, Event)
    assert event.app_id == "app_from_key"
    assert _code(_validate(make_raw_event(app_id="app_other"))) == "unknown_field"


def test_minimal_event_needs_only_id_key_type_and_ts(make_raw_event, drop):
    raw = make_raw_event(source_id=drop, revenue_micros=drop, currency=drop, attrs=drop)
    event = _validate(raw)
    assert isinstance(event, Event)
    assert event.source_id is None
    assert event.revenue_micros is None
    assert event.currency is None
    assert event.attrs == {}


def test_null_optional_fields_are_accepted(make_raw_event):
    event = _validate(
        make_raw_event(source_id=None, revenue_micros=None, currency=None, attrs=None)
    )
    assert isinstance(event, Event)
    assert event.attrs == {}


@pytest.mark.parametrize(
    "event_type", ["loaded", "load_failed", "impression", "click", "reward", "closed", "error"]
)
def test_every_contract_event_type_is_accepted(make_raw_event, event_type):
    event = _validate(make_raw_event(type=event_type))
    assert isinstance(event, Event)
    assert event.type == event_type


@pytest.mark.parametrize("raw", [None, [], "event", 42])
def test_non_object_event_is_rejected(raw):
    assert _code(_validate(raw)) == "invalid_event"


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("event_id", "evt-1\n", "invalid_event_id"),
        ("opportunity_key", encode_ulid(T0_MS, bytes(10)) + "\n", "invalid_opportunity_key"),
        ("source_id", "net_a\n", "invalid_source_id"),
        ("currency", "USD\n", "invalid_currency"),
    ],
)
def test_value_with_trailing_newline_is_rejected(make_raw_event, field, value, code):
    # The contract's character classes leave no room for "\n"; a regex anchored
    # with "$" alone still matches before a final newline.
    assert _code(_validate(make_raw_event(**{field: value}))) == code


@pytest.mark.parametrize(
    "event_id", [None, "", "x" * 65, "has space", "dot.ted", "ümlaut", 123, "semi;colon"]
)
def test_bad_event_id_is_rejected(make_raw_event, event_id):
    assert _code(_validate(make_raw_event(event_id=event_id))) == "invalid_event_id"


@pytest.mark.parametrize("event_id", ["a", "x" * 64, "A-z_0-9"])
def test_event_id_limits_are_accepted(make_raw_event, event_id):
    assert isinstance(_validate(make_raw_event(event_id=event_id)), Event)


@pytest.mark.parametrize(
    "key",
    [None, "", "not-a-ulid", "01hf7yat00000g40r40m30e209", "01HF7YAT00000G40R40M30E20", 7],
)
def test_bad_opportunity_key_is_rejected(make_raw_event, key):
    assert _code(_validate(make_raw_event(opportunity_key=key))) == "invalid_opportunity_key"


def test_opportunity_key_outside_the_accepted_time_range_is_rejected(make_raw_event):
    lo, hi = T0_MS - 1_000, T0_MS + 1_000
    for key_time, ok in [(lo - 1, False), (lo, True), (hi, True), (hi + 1, False)]:
        raw = make_raw_event(opportunity_key=encode_ulid(key_time, bytes(10)))
        result = _validate(raw, min_key_time_ms=lo, max_key_time_ms=hi)
        if ok:
            assert isinstance(result, Event)
        else:
            assert _code(result) == "opportunity_key_out_of_range"


@pytest.mark.parametrize("event_type", [None, "", "Impression", "install", 3])
def test_unknown_type_is_rejected(make_raw_event, event_type):
    assert _code(_validate(make_raw_event(type=event_type))) == "unknown_type"


@pytest.mark.parametrize(
    "ts",
    [
        None,
        True,
        False,
        1_700_000_000_000.0,
        1.5,
        math.nan,
        math.inf,
        "1700000000000",
        "NaN",
        0,
        -1,
        MIN_TS_MS - 1,
        MAX_TS_MS + 1,
        MAX_SAFE_INT + 1,
    ],
)
def test_invalid_ts_is_rejected(make_raw_event, ts):
    assert _code(_validate(make_raw_event(ts=ts))) == "invalid_ts"


def test_missing_ts_is_rejected(make_raw_event, drop):
    assert _code(_validate(make_raw_event(ts=drop))) == "invalid_ts"


@pytest.mark.parametrize("ts", [MIN_TS_MS, MAX_TS_MS])
def test_ts_at_the_accepted_range_bounds_is_accepted(make_raw_event, ts):
    # Client clocks outside 2000..2100 are broken; the bounds themselves are fine.
    assert isinstance(_validate(make_raw_event(ts=ts), sent_at_ms=ts + 1_000), Event)


@pytest.mark.parametrize(
    ("age_ms", "accepted"),
    [(MAX_EVENT_AGE_MS, True), (MAX_EVENT_AGE_MS + 1, False), (-60_000, True), (-60_001, False)],
)
def test_event_age_on_the_device_clock_is_bounded(make_raw_event, age_ms, accepted):
    # server_ts = received_at - (sent_at - ts) must stay a sane instant.
    result = _validate(make_raw_event(), sent_at_ms=T0_MS + 5_000 + age_ms)
    assert isinstance(result, Event) is accepted
    if not accepted:
        assert _code(result) == "invalid_ts"


def test_accepted_ts_range_is_years_2000_to_2100():
    assert dt.datetime.fromtimestamp(MIN_TS_MS / 1000, dt.UTC) == dt.datetime(
        2000, 1, 1, tzinfo=dt.UTC
    )
    assert dt.datetime.fromtimestamp(MAX_TS_MS / 1000, dt.UTC) == dt.datetime(
        2100, 1, 1, tzinfo=dt.UTC
    )


@pytest.mark.parametrize("source_id", ["", "x" * 65, "net a", "net/a", 5])
def test_bad_source_id_is_rejected(make_raw_event, source_id):
    assert _code(_validate(make_raw_event(source_id=source_id))) == "invalid_source_id"


@pytest.mark.parametrize("source_id", ["net.a:1", "A_b-c", "x" * 64])
def test_source_id_may_hold_dots_and_colons(make_raw_event, source_id):
    assert isinstance(_validate(make_raw_event(source_id=source_id)), Event)


@pytest.mark.parametrize("revenue", [-1, 1.5, 10.0, "100", True, MAX_SAFE_INT + 1])
def test_invalid_revenue_is_rejected(make_raw_event, revenue):
    assert _code(_validate(make_raw_event(revenue_micros=revenue))) == "invalid_revenue"


def test_zero_revenue_is_accepted(make_raw_event):
    event = _validate(make_raw_event(revenue_micros=0))
    assert isinstance(event, Event)
    assert event.revenue_micros == 0


@pytest.mark.parametrize("currency", ["usd", "US", "USDT", "", 840, "US1"])
def test_invalid_currency_is_rejected(make_raw_event, currency):
    assert _code(_validate(make_raw_event(currency=currency))) == "invalid_currency"


def test_revenue_without_currency_is_rejected(make_raw_event, drop):
    assert _code(_validate(make_raw_event(currency=drop))) == "invalid_currency"
    assert _code(_validate(make_raw_event(currency=None))) == "invalid_currency"


def test_currency_without_revenue_is_accepted(make_raw_event, drop):
    assert isinstance(_validate(make_raw_event(revenue_micros=drop)), Event)


@pytest.mark.parametrize(
    "attrs",
    [
        {"nested": {"a": 1}},
        {"list": [1, 2]},
        {f"k{i}": i for i in range(MAX_ATTRS + 1)},
        {"x": math.inf},
        {"x": -math.inf},
        {"x": math.nan},
        {"k" * 65: 1},
        {"long": "v" * 257},
        {"big": MAX_SAFE_INT + 1},
        {"small": -(MAX_SAFE_INT + 1)},
        {"nul": "a\x00b"},
        {"k\x00": 1},
        ["not", "a", "map"],
        "flat?",
    ],
    ids=[
        "nested",
        "list_value",
        "too_many_keys",
        "inf",
        "minus_inf",
        "nan",
        "long_key",
        "long_string",
        "unsafe_int",
        "unsafe_negative_int",
        "nul_in_value",
        "nul_in_key",
        "list",
        "string",
    ],
)
def test_invalid_attrs_are_rejected(make_raw_event, attrs):
    assert _code(_validate(make_raw_event(attrs=attrs))) == "invalid_attrs"


def test_attrs_at_the_limits_are_accepted(make_raw_event):
    attrs: dict[str, object] = {f"k{i}": i for i in range(MAX_ATTRS - 3)}
    attrs |= {"k" * 64: "v" * 256, "big": MAX_SAFE_INT, "neg": -MAX_SAFE_INT}
    assert len(attrs) == MAX_ATTRS
    event = _validate(make_raw_event(attrs=attrs))
    assert isinstance(event, Event)
    assert event.attrs == attrs


@pytest.mark.parametrize("field", ["app_id", "server_ts", "received_at", "Type", "extra"])
def test_unknown_field_is_rejected(make_raw_event, field):
    result = _validate(make_raw_event(**{field: "x"}))
    assert _code(result) == "unknown_field"
    assert field in result.message


def test_first_problem_in_field_order_is_reported(make_raw_event):
    raw = make_raw_event(type="bogus", ts="bad", currency="usd", extra=1)
    assert _code(_validate(raw)) == "unknown_type"


# --- validate_batch_envelope ---------------------------------------------------------------


def _envelope(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"sent_at": SENT_AT, "sdk": "ios/4.2.0", "events": [{}]}
    body.update(overrides)
    return body


def _request_error(func, body) -> RequestInvalidError:
    with pytest.raises(RequestInvalidError) as info:
        func(body)
    assert isinstance(info.value, ValueError)
    assert info.value.message
    return info.value


def test_good_batch_envelope_is_accepted():
    events = [{"event_id": str(i)} for i in range(3)]
    envelope = validate_batch_envelope(_envelope(events=events))
    assert envelope == BatchEnvelope(SENT_AT, "ios/4.2.0", tuple(events))


def test_batch_of_exactly_500_events_is_accepted():
    envelope = validate_batch_envelope(_envelope(events=[{}] * MAX_EVENTS_PER_BATCH))
    assert len(envelope.events) == 500


def test_batch_over_500_events_is_too_many_events():
    error = _request_error(validate_batch_envelope, _envelope(events=[{}] * 501))
    assert error.code == "too_many_events"
    assert error.details == {"max_events": 500}


@pytest.mark.parametrize("events", [[], None, {"0": {}}, "events"])
def test_empty_or_non_list_events_are_invalid_events(events):
    assert (
        _request_error(validate_batch_envelope, _envelope(events=events)).code == "invalid_events"
    )


@pytest.mark.parametrize(
    "sent_at",
    [None, 0, -5, 1.0, True, "1700000000000", MIN_TS_MS - 1, MAX_TS_MS + 1, MAX_SAFE_INT + 1],
)
def test_bad_sent_at_is_invalid_sent_at(sent_at):
    body = _envelope(sent_at=sent_at)
    assert _request_error(validate_batch_envelope, body).code == "invalid_sent_at"


@pytest.mark.parametrize("sdk", [None, "", "s" * 65, 4, "ios\x00"])
def test_bad_sdk_is_invalid_sdk(sdk):
    assert _request_error(validate_batch_envelope, _envelope(sdk=sdk)).code == "invalid_sdk"


@pytest.mark.parametrize("body", [None, [], "x", 1])
def test_non_object_batch_body_is_invalid_body(body):
    assert _request_error(validate_batch_envelope, body).code == "invalid_body"


# --- validate_sync_request -----------------------------------------------------------------


def _sync(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "placement_id": "home_banner",
        "device_id": "device-123",
        "ts_ms": T0_MS,
        "context": {"country": "US", "os": "ios", "app_version": "1.2.3"},
    }
    body.update(overrides)
    return body


def test_good_sync_request_is_accepted():
    request = validate_sync_request(_sync())
    assert request == SyncRequest(
        "home_banner", "device-123", T0_MS, {"country": "US", "os": "ios", "app_version": "1.2.3"}
    )


@pytest.mark.parametrize("context", [None, {}])
def test_sync_request_without_context_has_empty_context(context):
    assert validate_sync_request(_sync(context=context)).context == {}
    body = _sync()
    del body["context"]
    assert validate_sync_request(body).context == {}


@pytest.mark.parametrize("placement_id", [None, "", "p" * 65, "home banner", "home/banner", 1])
def test_bad_placement_id_is_invalid_placement_id(placement_id):
    body = _sync(placement_id=placement_id)
    assert _request_error(validate_sync_request, body).code == "invalid_placement_id"


def test_placement_id_with_trailing_newline_is_invalid_placement_id():
    body = _sync(placement_id="home_banner\n")
    assert _request_error(validate_sync_request, body).code == "invalid_placement_id"


@pytest.mark.parametrize("device_id", [None, "", "d" * 129, 12345, "dev\x00ice"])
def test_bad_device_id_is_invalid_device_id(device_id):
    body = _sync(device_id=device_id)
    assert _request_error(validate_sync_request, body).code == "invalid_device_id"


@pytest.mark.parametrize(
    "ts_ms", [None, 0, -1, 1.0, True, "1700000000000", MIN_TS_MS - 1, MAX_TS_MS + 1]
)
def test_bad_ts_ms_is_invalid_ts(ts_ms):
    assert _request_error(validate_sync_request, _sync(ts_ms=ts_ms)).code == "invalid_ts"


@pytest.mark.parametrize(
    "context",
    [
        {"carrier": "att"},
        {"country": {"code": "US"}},
        {"country": 1},
        {"country": "x" * 65},
        {"country": "U\x00S"},
        ["country"],
        "US",
        {
            "country": "US",
            "os": "ios",
            "app_version": "1",
            "os_version": "17",
            "device_type": "phone",
            "locale": "en",
            "extra1": "a",
            "extra2": "b",
            "extra3": "c",
        },
    ],
    ids=[
        "unknown_key",
        "nested",
        "number",
        "long_value",
        "nul_in_value",
        "list",
        "string",
        "too_many_keys",
    ],
)
def test_bad_context_is_invalid_context(context):
    body = _sync(context=context)
    assert _request_error(validate_sync_request, body).code == "invalid_context"


def test_every_known_context_key_is_accepted():
    context = {
        "country": "US",
        "os": "android",
        "app_version": "1.0",
        "os_version": "14",
        "device_type": "tablet",
        "locale": "en_US",
    }
    assert validate_sync_request(_sync(context=context)).context == context


@pytest.mark.parametrize("body", [None, [], "x"])
def test_non_object_sync_body_is_invalid_body(body):
    assert _request_error(validate_sync_request, body).code == "invalid_body"


# --- how far ahead an opportunity key may be (the gateway mints them) ---------------------


def test_a_key_further_ahead_than_the_clock_skew_tolerance_is_rejected(make_raw_event):
    from mediation.rules.validation import MAX_KEY_AHEAD_MS, accepted_key_times
    from mediation.rules.waterfall import DEFAULT_SKEW_TOLERANCE_MS

    assert MAX_KEY_AHEAD_MS == DEFAULT_SKEW_TOLERANCE_MS  # not the day it used to be
    low, high = accepted_key_times(RECEIVED_AT)
    for ahead_ms, ok in [(0, True), (MAX_KEY_AHEAD_MS, True), (MAX_KEY_AHEAD_MS + 1, False)]:
        raw = make_raw_event(opportunity_key=encode_ulid(RECEIVED_AT + ahead_ms, bytes(10)))
        result = _validate(raw, min_key_time_ms=low, max_key_time_ms=high)
        if ok:
            assert isinstance(result, Event), result
        else:
            assert _code(result) == "opportunity_key_out_of_range"
            assert isinstance(result, Rejection)
            assert "ahead" in result.message and "POST /v1/requests" in result.message


def test_a_key_older_than_the_retention_says_so(make_raw_event):
    from mediation.rules.validation import accepted_key_times

    low, high = accepted_key_times(RECEIVED_AT)
    raw = make_raw_event(opportunity_key=encode_ulid(low - 1, bytes(10)))
    result = _validate(raw, min_key_time_ms=low, max_key_time_ms=high)
    assert isinstance(result, Rejection) and result.code == "opportunity_key_out_of_range"
    assert "older" in result.message


# --- attrs numbers: one canonical form that every store keeps ------------------------------


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (-0.0, 0),
        (0.0, 0),
        (1.0, 1),
        (-3.0, -3),
        (1e15, 1_000_000_000_000_000),
        (float(MAX_SAFE_INT), MAX_SAFE_INT),
        (0.5, 0.5),
        (-1.25e-7, -1.25e-7),
        (5e-324, 5e-324),
        (4503599627370495.5, 4503599627370495.5),
    ],
)
def test_attrs_numbers_are_kept_in_the_form_postgres_and_parquet_give_back(
    make_raw_event, sent, kept
):
    # jsonb has no -0.0 and reads 1e16 back as an integer: a float with an
    # integral value is that integer, so every store gives the same value.
    event = _validate(make_raw_event(attrs={"x": sent}))
    assert isinstance(event, Event), event
    assert repr(event.attrs["x"]) == repr(kept)
    wire = decode_event(encode_event(event))
    assert repr(wire.attrs["x"]) == repr(kept)


@pytest.mark.parametrize("sent", [1e16, -1e16, 2.0**53, 1e300, -1.7976931348623157e308])
def test_attrs_integral_numbers_beyond_the_safe_range_are_rejected_however_written(
    make_raw_event, sent
):
    result = _validate(make_raw_event(attrs={"x": sent}))
    assert _code(result) == "invalid_attrs"
    assert isinstance(result, Rejection) and "safe integer range" in result.message


def test_hot_path_fields_carry_the_canonical_attrs(make_raw_event):
    raw = make_raw_event(attrs={"z": -0.0, "one": 1.0, "s": "1.0", "f": 0.25, "t": True})
    fields = normalise_event(
        raw,
        app_id="app_1",
        sent_at_ms=SENT_AT,
        received_at_ms=RECEIVED_AT,
        min_key_time_ms=T0_MS - 86_400_000,
        max_key_time_ms=T0_MS + 86_400_000,
    )
    assert isinstance(fields, dict)
    assert repr(fields["attrs"]) == repr({"z": 0, "one": 1, "s": "1.0", "f": 0.25, "t": True})
    assert raw["attrs"]["z"] == -0.0  # what the SDK sent is not changed in place
