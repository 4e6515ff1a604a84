"""The soak's memory rule: a fitted rise after the warm-up, within an allowance."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mediation.rules.soak import ALLOWED_RISE_MIB, memory_rise


def test_the_warm_up_is_left_out_and_a_flat_line_is_flat() -> None:
    points = [(float(t), 100.0 + min(t, 60)) for t in range(0, 200)]
    rise = memory_rise(points, after_s=60)
    assert rise is not None and rise.flat
    assert (rise.rise_mib, rise.start_mib, rise.span_s, rise.samples) == (0.0, 160.0, 139.0, 140)


def test_a_steady_leak_is_caught_and_its_rate_reported() -> None:
    points = [(float(t), 200.0 + 0.5 * t) for t in range(0, 121)]  # 30 MiB a minute
    rise = memory_rise(points, after_s=20)
    assert rise is not None and not rise.flat
    assert round(rise.per_minute_mib, 6) == 30.0 and round(rise.rise_mib, 6) == 50.0


def test_one_step_is_not_mistaken_for_a_leak() -> None:
    # A single allocator step of 8 MiB half-way, then flat again.
    points = [(float(t), 300.0 + (8.0 if t >= 100 else 0.0)) for t in range(0, 200)]
    rise = memory_rise(points, after_s=0)
    assert rise is not None and rise.flat and rise.rise_mib < ALLOWED_RISE_MIB


def test_too_few_points_after_the_warm_up_decide_nothing() -> None:
    assert memory_rise([(1.0, 5.0), (2.0, 6.0), (50.0, 7.0)], after_s=10) is None
    assert memory_rise([(5.0, 1.0)] * 4, after_s=0) is None


@given(
    base=st.floats(10, 4000),
    noise=st.lists(st.floats(-2, 2), min_size=30, max_size=120),
)
def test_noise_around_a_constant_is_flat(base: float, noise: list[float]) -> None:
    rise = memory_rise([(float(t), base + n) for t, n in enumerate(noise)], after_s=0)
    assert rise is not None and rise.flat
