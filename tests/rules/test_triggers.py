"""Scaling triggers: thresholds, states, and histogram quantiles as Prometheus computes them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediation.rules.triggers import TRIGGERS, evaluate, histogram_quantile

BY_NAME = {trigger.name: trigger for trigger in TRIGGERS}


def test_the_seeds_five_triggers_and_their_thresholds() -> None:
    assert {t.name: (t.threshold, t.above) for t in TRIGGERS} == {
        "sync_p95_latency": (300, True),
        "consumer_lag": (300, True),
        "ack_success": (99.9, False),
        "db_cpu": (70, True),
        "redis_memory": (75, True),
    }
    assert all(t.action for t in TRIGGERS)
    assert BY_NAME["ack_success"].describe_threshold() == "< 99.9 % for 10 min"


def test_states() -> None:
    latency, ack = BY_NAME["sync_p95_latency"], BY_NAME["ack_success"]
    assert evaluate(latency, 120.0).state == "ok"
    assert evaluate(latency, 300.0).state == "ok"  # at the threshold: not past it
    assert evaluate(latency, 301.0).state == "FIRING"
    assert evaluate(ack, 99.95).state == "ok"
    assert evaluate(ack, 99.8).state == "FIRING"
    unknown = evaluate(ack, None, "no event batches in the window")
    assert (unknown.state, unknown.note) == ("unknown", "no event batches in the window")


def test_histogram_quantiles_interpolate_inside_the_bucket() -> None:
    inf = math.inf
    buckets = [(0.1, 50.0), (0.2, 90.0), (0.5, 100.0), (inf, 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.35)
    assert histogram_quantile(0.95, [(0.1, 0.0), (inf, 0.0)]) is None
    assert histogram_quantile(0.99, [(0.1, 1.0), (inf, 10.0)]) == 0.1  # past the last bound


@given(st.lists(st.integers(0, 50), min_size=1, max_size=8), st.floats(0.01, 0.99))
def test_a_quantile_lies_within_the_histogram_bounds(counts: list[int], q: float) -> None:
    bounds = [0.005 * 2**n for n in range(len(counts))] + [math.inf]
    cumulative, total = [], 0
    for count in [*counts, 0]:
        total += count
        cumulative.append(float(total))
    value = histogram_quantile(q, list(zip(bounds, cumulative, strict=True)))
    if total == 0:
        assert value is None
    else:
        assert value is not None and 0 <= value <= bounds[-2]
