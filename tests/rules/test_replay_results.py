"""Replay results: snapshot checks, recompute diffs, canonical hashes."""

from __future__ import annotations

import dataclasses

from mediation.rules import close_opportunity
from mediation.rules.replay import recompute_result, result_hash, snapshot_result, summary


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


def test_recompute_includes_late_events_and_lists_what_changes(
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
    assert summary([result, unchanged]) == {
        "records": 2,
        "changed": 1,
        "fields": {name: 1 for name in sorted(result["changes"])},
    }


def test_the_result_hash_is_canonical(make_opportunity, make_event) -> None:
    opportunity = make_opportunity()
    events = [make_event(event_id="e1", type="loaded", source_id="net_a")]
    archive = close_opportunity(opportunity, events).archive
    first = snapshot_result(opportunity, events, archive)
    other = {"opportunity_key": "0" * 26, "mode": "snapshot", "missing": "archive record"}
    assert result_hash([first, other]) == result_hash([other, dict(reversed(first.items()))])
    assert result_hash([first]) != result_hash([first, other])
