"""The publish state machine, rollout plans, the health gate and config diffs (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediation.rules.publish import (
    DEFAULT_PLAN,
    FAILED,
    PENDING,
    PUBLISHED,
    ROLLED_BACK,
    ROLLING_BACK,
    ROLLING_OUT,
    STATES,
    TRANSITIONS,
    VALIDATING,
    CohortHealth,
    HealthThresholds,
    Operation,
    PlanError,
    Stage,
    cohort_field,
    cohort_health,
    config_diff,
    format_plan,
    health_regression,
    next_step,
    parse_plan,
    plan_from_text,
    served_percent,
)
from mediation.rules.waterfall import validate_config

PLAN = (Stage(10, 1_000), Stage(50, 1_000), Stage(100, 0))


def _op(state: str, stage: int = 0, started: int = 0, plan: tuple[Stage, ...] = PLAN) -> Operation:
    return Operation(state, stage, plan, started)


# -- plans ---------------------------------------------------------------------


def test_the_default_plan_is_valid_and_round_trips() -> None:
    assert parse_plan(format_plan(DEFAULT_PLAN)) == DEFAULT_PLAN


def test_plan_from_text_reads_percent_and_dwell() -> None:
    assert plan_from_text("1:60s, 10:2m,50:500ms,100") == (
        Stage(1, 60_000),
        Stage(10, 120_000),
        Stage(50, 500),
        Stage(100, 0),
    )


def test_plan_errors_are_all_listed() -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(
            [
                {"percent": 10, "dwell_ms": 1},
                {"percent": 5, "dwell_ms": 1},
                {"percent": 0},
                {"percent": 100, "dwell_ms": -1},
            ]
        )
    message = str(caught.value)
    assert "plan[1].percent: must be above the previous stage's 10" in message
    assert "plan[2].percent: must be an integer in 1..100" in message
    assert "plan[3].dwell_ms" in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([], "non-empty"),
        ("1,100", "non-empty"),
        ([{"percent": 10}, {"percent": 50}], "last stage must be 100"),
        ([{"percent": True}], "percent"),
    ],
)
def test_bad_plans_are_refused(raw: object, expected: str) -> None:
    with pytest.raises(PlanError, match=expected):
        parse_plan(raw)


def test_plan_text_with_a_bad_unit_is_refused() -> None:
    with pytest.raises(PlanError, match="dwell_ms"):
        plan_from_text("10:5y,100")


# -- the state machine ---------------------------------------------------------


def test_a_clean_rollout_goes_through_every_stage() -> None:
    step = next_step(_op(PENDING), 0)
    assert step is not None and step.state == VALIDATING
    assert next_step(_op(VALIDATING), 0) is None  # waits for the validation verdict
    step = next_step(_op(VALIDATING), 0, config_errors=[])
    assert step is not None and (step.state, step.stage, step.percent) == (ROLLING_OUT, 0, 10)
    assert next_step(_op(ROLLING_OUT, 0, started=100), 1_099) is None  # dwelling
    step = next_step(_op(ROLLING_OUT, 0, started=100), 1_100)
    assert step is not None and (step.state, step.stage, step.percent) == (ROLLING_OUT, 1, 50)
    step = next_step(_op(ROLLING_OUT, 2, started=0), 0)  # last stage, no dwell
    assert step is not None and (step.state, step.percent) == (PUBLISHED, 100)
    assert next_step(_op(PUBLISHED, 2), 10**12) is None


def test_invalid_config_fails_the_operation_with_every_error() -> None:
    step = next_step(_op(VALIDATING), 0, config_errors=["a: bad", "b: worse"])
    assert step is not None and step.state == FAILED
    assert step.reason == "invalid config: a: bad; b: worse"


def test_a_regression_after_the_dwell_rolls_back() -> None:
    step = next_step(_op(ROLLING_OUT, 1, started=0), 1_000, regression="error rate 9%")
    assert step is not None and (step.state, step.percent) == (ROLLING_BACK, 0)
    assert "health gate at 50%: error rate 9%" in step.reason
    step = next_step(_op(ROLLING_BACK, 1), 0)
    assert step is not None and step.state == ROLLED_BACK
    assert next_step(_op(ROLLED_BACK), 0) is None
    assert next_step(_op(FAILED), 0) is None


@given(
    state=st.sampled_from(STATES),
    stage=st.integers(0, 2),
    started=st.integers(0, 5_000),
    now=st.integers(0, 10_000),
    errors=st.one_of(st.none(), st.lists(st.text(max_size=5), max_size=2)),
    regression=st.one_of(st.none(), st.just("worse")),
)
def test_every_step_is_an_allowed_transition(
    state: str,
    stage: int,
    started: int,
    now: int,
    errors: list[str] | None,
    regression: str | None,
) -> None:
    step = next_step(_op(state, stage, started), now, config_errors=errors, regression=regression)
    if step is not None:
        assert step.state in TRANSITIONS[state]
        assert 0 <= step.percent <= 100
        assert step.percent == served_percent(step.state, step.percent) or step.state in (
            VALIDATING,
            PENDING,
        )


def test_served_percent_per_state() -> None:
    assert served_percent(PUBLISHED, 10) == 100
    assert served_percent(ROLLING_OUT, 10) == 10
    for state in (PENDING, VALIDATING, FAILED, ROLLING_BACK, ROLLED_BACK):
        assert served_percent(state, 50) == 0


# -- the health gate -----------------------------------------------------------


def test_too_few_requests_are_not_judged() -> None:
    new = CohortHealth(requests=10, errors=10)
    assert health_regression(new, CohortHealth(requests=1000), HealthThresholds()) is None


def test_an_error_rate_increase_beyond_the_threshold_is_a_regression() -> None:
    thresholds = HealthThresholds(max_error_rate_increase=0.02, min_requests=50)
    previous = CohortHealth(requests=1_000, errors=10)  # 1 %
    assert health_regression(CohortHealth(requests=100, errors=2), previous, thresholds) is None
    reason = health_regression(CohortHealth(requests=100, errors=5), previous, thresholds)
    assert reason is not None and reason.startswith("error rate 5.0% against 1.0%")


def test_load_failures_are_judged_against_load_attempts() -> None:
    thresholds = HealthThresholds(max_load_failure_rate_increase=0.1, min_requests=1)
    previous = CohortHealth(requests=100, loads=100, load_failures=5)
    new = CohortHealth(requests=100, loads=10, load_failures=5)  # 50 %
    reason = health_regression(new, previous, thresholds)
    assert reason is not None and reason.startswith("load-failure rate 50.0%")
    # No loads reported yet in the new cohort: nothing to judge on that signal.
    assert health_regression(CohortHealth(requests=100), previous, thresholds) is None


def test_no_fill_rate_is_judged() -> None:
    thresholds = HealthThresholds(max_no_fill_rate_increase=0.1, min_requests=1)
    previous = CohortHealth(requests=100, no_fills=10)
    reason = health_regression(CohortHealth(requests=100, no_fills=90), previous, thresholds)
    assert reason is not None and reason.startswith("no-fill rate 90.0%")


def test_thresholds_from_a_stored_dict() -> None:
    assert HealthThresholds.from_dict({}) == HealthThresholds()
    assert HealthThresholds.from_dict({"min_requests": 5}).min_requests == 5
    with pytest.raises(PlanError, match="max_error_rate_increase"):
        HealthThresholds.from_dict({"max_error_rate_increase": -1})


def test_cohort_health_sums_the_minutes_in_range() -> None:
    fields = {
        cohort_field(10, "r"): 5,
        cohort_field(11, "r"): 7,
        cohort_field(11, "e"): 1,
        cohort_field(12, "n"): 2,
        cohort_field(13, "r"): 100,  # after the range
        "garbage": 3,
        "9:r": 50,  # before the range
    }
    health = cohort_health(fields, 10 * 60_000, 12 * 60_000 + 5)
    assert health == CohortHealth(requests=12, errors=1, no_fills=2)


# -- config validation and diffs -------------------------------------------------


def test_validation_lists_semantic_and_structural_problems_together() -> None:
    body = {
        "sources": {"net_a": {}, "net_b": {}},
        "placements": {
            "empty": {"waterfall": []},
            "p": {
                "waterfall": [
                    {"source_id": "net_a", "floor_micros": -1, "timeout_ms": 100},
                    {"source_id": "net_b", "floor_micros": 1, "timeout_ms": 100},
                    {"source_id": "net_b", "floor_micros": 2, "timeout_ms": 100},
                    {"source_id": "net_x", "floor_micros": 3, "timeout_ms": 100},
                ]
            },
        },
    }
    errors = validate_config(body)
    assert "placements.empty.waterfall: must not be empty" in errors
    assert any("floor_micros: must be an integer >= 0" in e for e in errors)
    assert "placements.p.waterfall[2].source_id: 'net_b' appears twice in this waterfall" in errors
    assert "placements.p.waterfall[3].source_id: unknown source 'net_x' (not in sources)" in errors


def test_config_diff_lists_changed_leaves_by_path() -> None:
    before = {"grace_ms": 1, "placements": {"p": {"waterfall": [{"floor_micros": 5}]}}, "x": 1}
    after = {"grace_ms": 2, "placements": {"p": {"waterfall": [{"floor_micros": 5}, {"a": 1}]}}}
    assert config_diff(before, after) == [
        ("grace_ms", 1, 2),
        ("placements.p.waterfall[1]", None, {"a": 1}),
        ("x", 1, None),
    ]


# Without nulls: a missing key reads as None, so {"k": None} and {} have the
# same leaves.
json_values = st.recursive(
    st.booleans() | st.integers() | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)


@given(json_values, json_values)
def test_config_diff_is_empty_exactly_for_equal_documents(a: object, b: object) -> None:
    assert config_diff(a, a) == []
    assert (config_diff(a, b) == []) == (a == b and _same_types(a, b))


def _same_types(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return all(_same_types(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b)


# -- degradation profiles --------------------------------------------------------


def _with_profiles(profiles: object) -> dict[str, object]:
    return {
        "placements": {
            "p": {
                "waterfall": [
                    {"source_id": s, "floor_micros": f, "timeout_ms": 2_000}
                    for s, f in (("a", 3), ("b", 2), ("c", 1))
                ]
            }
        },
        "degradation_profiles": profiles,
    }


def test_a_degradation_profile_shortens_waterfalls_and_caps_timeouts() -> None:
    from mediation.rules.waterfall import choose_waterfall, degrade, parse_config

    body = _with_profiles({"lite": {"max_waterfall_depth": 2, "max_timeout_ms": 500}})
    config = parse_config(3, body)
    lite = degrade(config, config.degradation_profiles["lite"])
    chosen = choose_waterfall(lite, "p", {})
    assert chosen is not None
    assert [(e.source_id, e.timeout_ms) for e in chosen] == [("a", 500), ("b", 500)]
    assert len(choose_waterfall(config, "p", {}) or ()) == 3  # the original is untouched


def test_degradation_profile_errors_are_listed() -> None:
    errors = validate_config(
        _with_profiles(
            {
                "Bad Name": {},
                "x": {
                    "max_waterfall_depth": 0,
                    "sample_event_types": {"impression": 0.5, "closed": 2, "bogus": 1},
                    "colour": "red",
                },
            }
        )
    )
    text = "\n".join(errors)
    assert "degradation_profiles.Bad Name: names are" in text
    assert "degradation_profiles.x: unknown setting(s) ['colour']" in text
    assert "max_waterfall_depth: must be an integer in 1..50" in text
    assert "sample_event_types.impression: only closed, error events may be sampled" in text
    assert "sample_event_types.closed: the share kept must be a number in 0..1" in text
    assert "sample_event_types.bogus: unknown event type; only" in text


@given(st.text(min_size=1, max_size=30))
def test_sampling_is_decided_by_event_id_alone(event_id: str) -> None:
    from mediation.rules.waterfall import keeps_event

    assert keeps_event(event_id, 1.0)
    assert not keeps_event(event_id, 0.0)
    assert keeps_event(event_id, 0.3) == keeps_event(event_id, 0.3)
    if keeps_event(event_id, 0.3):
        assert keeps_event(event_id, 0.6)  # a larger share keeps a superset


def test_sampling_keeps_about_the_share() -> None:
    from mediation.rules.waterfall import keeps_event

    kept = sum(keeps_event(f"e{i}", 0.25) for i in range(20_000))
    assert 4_600 < kept < 5_400
