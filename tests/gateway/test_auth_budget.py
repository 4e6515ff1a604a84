"""The failed-authentication budget (``gateway/auth_throttle.py``): pure, the time is given."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.auth_throttle import AuthFailureBudget, BucketSize

SMALL = BucketSize(burst=3, per_s=1.0)
WIDE = BucketSize(burst=1_000, per_s=1_000.0)


def _fail_until_refused(budget: AuthFailureBudget, address: str, now_s: float) -> int:
    failures = 0
    while budget.refusal(address, now_s) is None:
        budget.record_failure(address, now_s)
        failures += 1
        assert failures < 10_000
    return failures


def test_an_address_is_refused_once_its_burst_of_failures_is_spent() -> None:
    budget = AuthFailureBudget(per_address=SMALL, overall=WIDE)
    assert _fail_until_refused(budget, "10.0.0.1", 100.0) == 3
    refusal = budget.refusal("10.0.0.1", 100.0)
    assert refusal is not None and refusal.scope == "address" and refusal.retry_after_s == 1
    # One failure's worth refills in a second: one more try, then refused again.
    assert _fail_until_refused(budget, "10.0.0.1", 101.0) == 1


def test_one_address_failing_never_refuses_another() -> None:
    budget = AuthFailureBudget(per_address=SMALL, overall=WIDE)
    _fail_until_refused(budget, "10.0.0.1", 100.0)
    assert budget.refusal("10.0.0.2", 100.0) is None


def test_when_the_overall_budget_is_spent_only_addresses_that_failed_are_refused() -> None:
    budget = AuthFailureBudget(per_address=SMALL, overall=BucketSize(burst=4, per_s=1.0))
    for n in range(4):  # four addresses, one failure each: the overall budget is spent
        budget.record_failure(f"10.0.1.{n}", 100.0)
    refusal = budget.refusal("10.0.1.0", 100.0)
    assert refusal is not None and refusal.scope == "overall"
    assert budget.refusal("10.9.9.9", 100.0) is None  # no recent failure: served


def test_a_refilled_address_is_forgotten_and_memory_is_bounded() -> None:
    budget = AuthFailureBudget(per_address=SMALL, overall=WIDE, max_addresses=100)
    for n in range(5_000):
        budget.record_failure(f"2001:db8::{n:x}", 100.0)
    assert budget.remembered() == 100
    budget.record_failure("10.0.0.1", 100.0)
    assert budget.refusal("10.0.0.1", 200.0) is None
    assert budget.remembered() == 99  # 10.0.0.1 refilled and was dropped


_EVENTS = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(min_value=0.0, max_value=2.0)),
    max_size=300,
)


@settings(max_examples=200)
@given(events=_EVENTS)
def test_no_address_fails_more_than_its_burst_plus_its_rate(
    events: list[tuple[str, float]],
) -> None:
    budget = AuthFailureBudget(per_address=SMALL, overall=WIDE)
    now_s, first_s = 1_000.0, 1_000.0
    admitted = {"a": 0, "b": 0, "c": 0}
    for address, step_s in events:
        now_s += step_s
        if budget.refusal(address, now_s) is None:
            budget.record_failure(address, now_s)
            admitted[address] += 1
    allowed = SMALL.burst + SMALL.per_s * (now_s - first_s)
    assert all(count <= allowed for count in admitted.values()), admitted


@settings(max_examples=200)
@given(events=_EVENTS, overall_burst=st.integers(min_value=1, max_value=20))
def test_an_address_that_never_failed_is_never_refused(
    events: list[tuple[str, float]], overall_burst: int
) -> None:
    budget = AuthFailureBudget(per_address=SMALL, overall=BucketSize(overall_burst, 1.0))
    now_s = 1_000.0
    for address, step_s in events:
        now_s += step_s
        if budget.refusal(address, now_s) is None:
            budget.record_failure(address, now_s)
        assert budget.refusal("clean", now_s) is None
