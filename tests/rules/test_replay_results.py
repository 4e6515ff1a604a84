"""Replay, pure: selections, request parsing, snapshot checks, recompute diffs, canonical hashes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediation.rules import close_opportunity
from mediation.rules.replay import (
    ReplayRequest,
    ReplayRequestError,
    Selection,
    WindowOverride,
    instant_ms,
    parse_request,
    recompute_result,
    snapshot_result,
)
from mediation.rules.ulid import encode_ulid
from replay.digest import ResultDigest, canonical_line, result_hash

KEY = encode_ulid(1_760_000_000_000, bytes(10))


def test_a_snapshot_returns_the_counted_inputs_and_checks_their_hash(
    make_opportunity, make_event
) -> None:
    opportunity = make_opportunity()
    events = [make_event(event_id="e1", type="loaded", source_id="net_a")]
    archive = close_opportunity(opportunity, events).archive
    result = snapshot_result(opportunity, events, archive)
    assert result["inputs_hash_matches"] is True
    assert [e["event_id"] for e in result["counted_events"]] == ["e1"]
    tampered = dataclasses.replace(archive, inputs_hash="0" * 64)
    assert snapshot_result(opportunity, events, tampered)["inputs_hash_matches"] is False


def test_recompute_includes_late_events_and_the_summary_says_how_records_change(
    make_opportunity, make_event
) -> None:
    opportunity = make_opportunity()
    loaded = make_event(event_id="e1", type="loaded", source_id="net_a")
    archive = close_opportunity(opportunity, [loaded]).archive
    late = make_event(event_id="e2", type="impression", source_id="net_a", at=2_000,
                      revenue_micros=900, currency="USD")  # fmt: skip
    result = recompute_result(opportunity, [loaded], [late], archive)
    assert result["changes"]["outcome"] == {"archive": "loaded", "recomputed": "impressed"}
    assert result["changes"]["revenue_micros"]["recomputed"] == 900
    unchanged = recompute_result(opportunity, [loaded], [], archive)
    assert unchanged["changes"] == {}
    digest = ResultDigest()
    for one in sorted([result, {**unchanged, "opportunity_key": "Z"}], key=str):
        digest.add(one)
    assert digest.summary() == {
        "records": 2,
        "changed": 1,
        "missing": 0,
        "fields": {name: 1 for name in sorted(result["changes"])},
        "outcomes": {"loaded -> impressed": 1},
        "revenue_micros_delta": 900,
    }


def test_recompute_under_another_config_snapshot_uses_its_windows(
    make_opportunity, make_event
) -> None:
    opportunity = make_opportunity()
    events = [make_event(event_id="e1", type="loaded", source_id="net_a", at=5_000)]
    archive = close_opportunity(opportunity, events).archive
    assert archive.counted_events == 1
    # A window that ends before the event: it would not have counted.
    narrow = WindowOverride(99, closure_window_ms=1_000, grace_ms=500, skew_tolerance_ms=100)
    result = recompute_result(opportunity, events, [], archive, config=narrow)
    assert result["changes"]["config_version"]["recomputed"] == 99
    assert result["changes"]["outcome"]["archive"] == "loaded"
    assert result["recomputed"]["counted_events"] == 0


def test_the_result_hash_is_canonical_and_is_the_sha256_of_the_jsonl(
    make_opportunity, make_event
) -> None:
    opportunity = make_opportunity()
    events = [make_event(event_id="e1", type="loaded", source_id="net_a")]
    archive = close_opportunity(opportunity, events).archive
    first = snapshot_result(opportunity, events, archive)
    other = {"opportunity_key": "0" * 26, "mode": "snapshot", "missing": "archive record"}
    assert result_hash([first, other]) == result_hash([other, dict(reversed(first.items()))])
    assert result_hash([first]) != result_hash([first, other])
    jsonl = canonical_line(other) + canonical_line(first)
    assert result_hash([first, other]) == hashlib.sha256(jsonl).hexdigest()
    # The canonical line is plain sorted, compact JSON.
    assert (
        canonical_line(other)
        == (json.dumps(other, sort_keys=True, separators=(",", ":")) + "\n").encode()
    )


def test_results_must_come_in_key_order() -> None:
    digest = ResultDigest()
    digest.add({"opportunity_key": "B", "mode": "snapshot", "missing": "x"})
    with pytest.raises(ValueError, match="out of key order"):
        digest.add({"opportunity_key": "A", "mode": "snapshot", "missing": "x"})


def test_a_range_selection_touches_its_days_and_chunks_in_key_order() -> None:
    start = int(dt.datetime(2026, 11, 24, 23, 30, tzinfo=dt.UTC).timestamp() * 1000)
    selection = Selection.of_range(start, start + 3_600_000, app_id="a")
    assert selection.days() == [dt.date(2026, 11, 24), dt.date(2026, 11, 25)]
    # 30 minutes on each day; the first holds 30 opportunities, the second 5.
    first, second = dt.date(2026, 11, 24), dt.date(2026, 11, 25)
    chunks = list(selection.chunks({first: 30, second: 5}, chunk_rows=10))
    assert [(c.start_ms - start, c.end_ms - start) for c in chunks] == [
        (0, 600_000), (600_000, 1_200_000), (1_200_000, 1_800_000),  # cut at midnight
        (1_800_000, 3_600_000),
    ]  # fmt: skip
    # Days holding nothing are skipped; so is the whole range when nothing is stored.
    assert list(selection.chunks({second: 5}, chunk_rows=10)) == chunks[3:]
    assert list(Selection.of_range(0, 2**47).chunks({})) == []
    assert all(c.app_id == "a" for c in chunks)
    bounds = [c.key_bounds() for c in chunks]
    assert all(low < high for low, high in bounds)
    assert all(bounds[n][1] == bounds[n + 1][0] for n in range(len(bounds) - 1))
    assert selection.describe() == {"from_ms": start, "to_ms": start + 3_600_000, "app_id": "a"}
    # A range ending exactly at midnight does not touch the next day.
    midnight = int(dt.datetime(2026, 11, 25, tzinfo=dt.UTC).timestamp() * 1000)
    assert Selection.of_range(midnight - 10, midnight).days() == [dt.date(2026, 11, 24)]


@given(
    st.integers(0, 2**47),
    st.integers(1, 10**9),
    st.integers(-(10**6), 10**10),
    st.binary(min_size=10, max_size=10),
)
def test_a_key_is_inside_the_range_bounds_exactly_when_its_time_is(
    start: int, length: int, offset: int, randomness: bytes
) -> None:
    time_ms = start + offset
    if not 0 <= time_ms < 2**48:
        return
    low, high = Selection.of_range(start, start + length).key_bounds()
    key = encode_ulid(time_ms, randomness)
    assert (low <= key < high) == (start <= time_ms < start + length)


def test_key_selections_are_sorted_unique_and_checked() -> None:
    assert Selection.of_keys([KEY, KEY]).keys == (KEY,)
    assert Selection.of_keys([KEY]).describe() == {"opportunity_keys": [KEY]}
    for bad, message in (([], "no opportunity key"), (["nope"], "not an opportunity key")):
        with pytest.raises(ReplayRequestError, match=message):
            Selection.of_keys(bad)
    with pytest.raises(ReplayRequestError, match="from < to"):
        Selection.of_range(10, 10)


def test_instants_are_epoch_ms_or_iso_8601_utc_unless_said() -> None:
    assert instant_ms(5, "from") == 5
    assert instant_ms("5", "from") == 5
    assert instant_ms("1970-01-01T00:00:01Z", "from") == 1_000
    assert instant_ms("1970-01-01T01:00:00+01:00", "from") == 0
    assert instant_ms("1970-01-02", "from") == 86_400_000
    for bad in ("yesterday", True, None, 1.5):
        with pytest.raises(ReplayRequestError, match="from must be"):
            instant_ms(bad, "from")


def test_replay_api_bodies_are_parsed_or_refused_with_the_reason() -> None:
    request = parse_request({"opportunity_key": KEY, "mode": "recompute", "config_version": 3})
    assert request == ReplayRequest(Selection.of_keys([KEY]), "recompute", None, 3)
    ranged = parse_request({"from": 0, "to": "1970-01-01T01:00:00Z", "placement_id": "p"})
    assert ranged.selection == Selection.of_range(0, 3_600_000, placement_id="p")
    refused = {
        "unknown fields: bogus": {"opportunity_key": KEY, "bogus": 1},
        "not both": {"opportunity_key": KEY, "from": 0, "to": 1},
        "not both|give": {},
        "needs both from and to": {"from": 0},
        "filter a time range": {"opportunity_key": KEY, "app_id": "a"},
        "must be a list": {"opportunity_keys": KEY},
        "config_version must be": {
            "opportunity_key": KEY,
            "mode": "recompute",
            "config_version": True,
        },
        "mode must be one of": {"opportunity_key": KEY, "mode": "delete"},
        "unknown rule version": {
            "opportunity_key": KEY,
            "mode": "recompute",
            "rule_version": "r9",
        },
        "need mode recompute": {"opportunity_key": KEY, "config_version": 2},
        "at most 128": {"from": 0, "to": 1, "app_id": "x" * 129},
    }
    for message, body in refused.items():
        with pytest.raises(ReplayRequestError, match=message):
            parse_request(body)
