"""Circuit-breaker rules: outcomes per source, windowed health, probing trickle."""

from __future__ import annotations

from mediation.rules.breaker import (
    BreakerPolicy,
    SourceHealth,
    admitted_waterfall,
    breaker_field,
    health_by_source,
    is_open,
    source_outcomes,
)
from mediation.rules.closure import close_opportunity
from mediation.rules.model import WaterfallEntry

POLICY = BreakerPolicy(window_minutes=2, min_attempts=10, open_failure_ratio=0.5, probe_share=0.05)


def test_outcome_per_reported_source(make_opportunity, make_event):
    opp = make_opportunity()  # waterfall net_a, net_b
    events = [
        make_event(event_id="f", type="load_failed", source_id="net_a", at=100),
        make_event(event_id="l", type="loaded", source_id="net_b", at=200),
        make_event(event_id="x", type="impression", source_id="net_zz", at=300),
    ]
    assert source_outcomes(close_opportunity(opp, events)) == [("net_a", True), ("net_b", False)]


def test_a_failure_followed_by_a_load_of_the_same_source_is_a_success(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(event_id="f", type="load_failed", source_id="net_a", at=100),
        make_event(event_id="l", type="loaded", source_id="net_a", at=200),
    ]
    assert source_outcomes(close_opportunity(opp, events)) == [("net_a", False)]


def test_health_sums_only_the_window() -> None:
    counts = {
        breaker_field("net_a", 100, "a"): 8,
        breaker_field("net_a", 100, "f"): 6,
        breaker_field("net_a", 99, "a"): 4,
        breaker_field("net_a", 99, "f"): 4,
        breaker_field("net_a", 98, "a"): 50,  # outside a two-minute window
        "garbage": 3,
    }
    assert health_by_source(counts, 100, POLICY) == {"net_a": SourceHealth(12, 10)}


def test_breaker_opens_only_with_enough_attempts_and_failures() -> None:
    assert is_open(SourceHealth(10, 5), POLICY)
    assert not is_open(SourceHealth(10, 4), POLICY)
    assert not is_open(SourceHealth(9, 8), POLICY)  # low volume and one success


def test_low_volume_keeps_failing_source_open_until_a_probe_succeeds() -> None:
    # Once open only probes try the source: a handful of attempts, all failed.
    assert is_open(SourceHealth(3, 3), POLICY)
    assert not is_open(SourceHealth(2, 2), POLICY)
    assert not is_open(SourceHealth(4, 3), POLICY)  # a probe got through: close


def test_open_sources_are_skipped_except_for_probes() -> None:
    waterfall = (WaterfallEntry("net_a", 3, 1), WaterfallEntry("net_b", 2, 1))
    opened = frozenset({"net_a"})
    assert admitted_waterfall(waterfall, opened, 0.5, POLICY) == (waterfall[1],)
    assert admitted_waterfall(waterfall, opened, 0.01, POLICY) == waterfall
    assert admitted_waterfall(waterfall, frozenset(), 0.5, POLICY) == waterfall
