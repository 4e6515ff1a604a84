"""The config publish state machine: pure decisions, no clock, no IO.

An operation publishes one config version of one app::

    pending -> validating -> rolling_out (stage 0, 1, ... of its plan) -> published
                  |                |
                  v                v (health regression, or an operator)
                failed        rolling_back -> rolled_back

``rolling_back`` is the compensation step: while an operation is in it (and
after it, in ``rolled_back``) every device is served the version that was
published before. An operator may roll back any active operation and the
app's latest published one.

The worker (``mediation/ops/publish_worker.py``) asks ``next_step`` what to do
with an operation and applies the answer as a compare-and-set on the
operation's (state, stage), so two workers never apply one step twice and
a worker killed at any point resumes from what is stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import InputError
from .records import python_class, record

__all__ = [
    "ACTIVE_STATES",
    "COHORT_ERROR",
    "COHORT_LOAD",
    "COHORT_LOAD_FAILURE",
    "COHORT_NO_FILL",
    "COHORT_REQUEST",
    "COHORT_TTL_S",
    "DEFAULT_PLAN",
    "FAILED",
    "PENDING",
    "PUBLISHED",
    "ROLLBACK_FROM",
    "ROLLED_BACK",
    "ROLLING_BACK",
    "ROLLING_OUT",
    "STATES",
    "TRANSITIONS",
    "VALIDATING",
    "CohortHealth",
    "HealthThresholds",
    "Operation",
    "PlanError",
    "Stage",
    "Step",
    "cohort_field",
    "cohort_health",
    "cohort_key",
    "config_diff",
    "format_plan",
    "health_regression",
    "next_step",
    "parse_plan",
    "plan_from_text",
    "served_percent",
]

PENDING = "pending"
VALIDATING = "validating"
ROLLING_OUT = "rolling_out"
PUBLISHED = "published"
FAILED = "failed"
ROLLING_BACK = "rolling_back"
ROLLED_BACK = "rolled_back"
STATES = (PENDING, VALIDATING, ROLLING_OUT, PUBLISHED, FAILED, ROLLING_BACK, ROLLED_BACK)
# At most one of these per app at a time (a unique index says so too).
ACTIVE_STATES = (PENDING, VALIDATING, ROLLING_OUT, ROLLING_BACK)
ROLLBACK_FROM = (PENDING, VALIDATING, ROLLING_OUT, PUBLISHED)
TRANSITIONS: Mapping[str, frozenset[str]] = {
    PENDING: frozenset({VALIDATING, ROLLING_BACK}),
    VALIDATING: frozenset({ROLLING_OUT, FAILED, ROLLING_BACK}),
    ROLLING_OUT: frozenset({ROLLING_OUT, PUBLISHED, ROLLING_BACK}),
    PUBLISHED: frozenset({ROLLING_BACK}),
    ROLLING_BACK: frozenset({ROLLED_BACK}),
    FAILED: frozenset(),
    ROLLED_BACK: frozenset(),
}

_MAX_STAGES = 10
_MAX_DWELL_MS = 7 * 24 * 3600 * 1000


@python_class
class PlanError(InputError):
    """A rollout plan is invalid; the message lists every problem."""

    code = "plan_invalid"


@record
class Stage:
    percent: int  # rollout buckets 0..percent-1 get the new version
    dwell_ms: int  # how long the stage is watched before the next one


DEFAULT_PLAN = (Stage(1, 60_000), Stage(10, 60_000), Stage(50, 120_000), Stage(100, 0))


def parse_plan(raw: object) -> tuple[Stage, ...]:
    """A plan from its stored form ``[{"percent": 1, "dwell_ms": 60000}, ...]``."""
    if not isinstance(raw, list) or not raw:
        raise PlanError("plan: must be a non-empty list of stages")
    errors: list[str] = []
    stages: list[Stage] = []
    if len(raw) > _MAX_STAGES:
        errors.append(f"plan: at most {_MAX_STAGES} stages, got {len(raw)}")
    for i, item in enumerate(raw):
        percent = item.get("percent") if isinstance(item, dict) else None
        dwell = item.get("dwell_ms", 0) if isinstance(item, dict) else None
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
            errors.append(f"plan[{i}].percent: must be an integer in 1..100, got {percent!r}")
            continue
        if isinstance(dwell, bool) or not isinstance(dwell, int) or not 0 <= dwell <= _MAX_DWELL_MS:
            errors.append(f"plan[{i}].dwell_ms: must be an integer in 0..{_MAX_DWELL_MS}")
            continue
        if stages and percent <= stages[-1].percent:
            errors.append(
                f"plan[{i}].percent: must be above the previous stage's {stages[-1].percent}"
            )
        stages.append(Stage(percent, dwell))
    if stages and stages[-1].percent != 100 and not errors:
        errors.append("plan: the last stage must be 100 percent")
    if errors:
        raise PlanError("; ".join(errors))
    return tuple(stages)


def format_plan(plan: Sequence[Stage]) -> list[dict[str, int]]:
    """The stored form of a plan (what ``parse_plan`` reads)."""
    return [{"percent": s.percent, "dwell_ms": s.dwell_ms} for s in plan]


def plan_from_text(text: str) -> tuple[Stage, ...]:
    """``"1:60s,10:60s,50:2m,100"``: percent, then an optional dwell (ms, s, m or h)."""
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
    raw: list[object] = []
    for part in text.split(","):
        percent_text, _, dwell_text = part.strip().partition(":")
        dwell_ms: object = 0
        if dwell_text:
            number = dwell_text.rstrip("mshMSH")
            unit = dwell_text[len(number) :].lower() or "ms"
            dwell_ms = (
                int(number) * units[unit] if number.isdigit() and unit in units else dwell_text
            )
        raw.append(
            {
                "percent": int(percent_text) if percent_text.isdigit() else percent_text,
                "dwell_ms": dwell_ms,
            }
        )
    return parse_plan(raw)


def served_percent(state: str, percent: int) -> int:
    """Share of rollout buckets that get an operation's new version in ``state``."""
    if state == PUBLISHED:
        return 100
    if state == ROLLING_OUT:
        return percent
    return 0  # not yet rolling, failed, or rolled (or rolling) back: the previous version


@record
class Operation:
    """What the state machine needs to know about a stored publish operation."""

    state: str
    stage: int
    plan: tuple[Stage, ...]
    stage_started_ms: int  # when the operation entered its current (state, stage)


@record
class Step:
    """One transition to apply: the new (state, stage, percent) and why."""

    state: str
    stage: int
    percent: int
    reason: str


@record
class CohortHealth:
    """Live signals of the devices served one config version, over the same period."""

    requests: int = 0
    errors: int = 0  # sync requests answered with an error
    no_fills: int = 0
    loads: int = 0  # load attempts reported by SDK events
    load_failures: int = 0

    def rate(self, part: int, whole: int) -> float:
        return part / whole if whole else 0.0


# Cohort signals, counted per (app, config version, minute) in one Redis hash
# per (app, version): the gateway counts requests, errors and no-fills of the
# devices it served each version; the worker counts load attempts and load
# failures of closed opportunities by the version that chose their waterfall.
COHORT_TTL_S = 2 * 24 * 3600  # how long Redis keeps them: longer than any plan's stages
COHORT_REQUEST = "r"
COHORT_ERROR = "e"
COHORT_NO_FILL = "n"
COHORT_LOAD = "l"
COHORT_LOAD_FAILURE = "lf"
_COHORT_FIELDS = {
    COHORT_REQUEST: "requests",
    COHORT_ERROR: "errors",
    COHORT_NO_FILL: "no_fills",
    COHORT_LOAD: "loads",
    COHORT_LOAD_FAILURE: "load_failures",
}


def cohort_key(namespace: str, app_id: str, version: int) -> str:
    return f"{namespace}cohort:{app_id}:{version}"


def cohort_field(minute: int, signal: str) -> str:
    return f"{minute}:{signal}"


def cohort_health(fields: Mapping[str, int], since_ms: int, until_ms: int) -> CohortHealth:
    """Sum a cohort hash's minutes that overlap ``since_ms..until_ms``."""
    first, last = since_ms // 60_000, until_ms // 60_000
    sums = dict.fromkeys(_COHORT_FIELDS.values(), 0)
    for field, count in fields.items():
        minute_text, _, signal = field.partition(":")
        name = _COHORT_FIELDS.get(signal)
        if name is None or not minute_text.isdigit() or not first <= int(minute_text) <= last:
            continue
        sums[name] += count
    return CohortHealth(**sums)


@record
class HealthThresholds:
    """How much worse than the previous version's cohort the new one may be."""

    max_error_rate_increase: float = 0.02
    max_no_fill_rate_increase: float = 0.10
    max_load_failure_rate_increase: float = 0.10
    # Fewer requests than this in the new cohort: too little to judge, pass.
    min_requests: int = 50

    @classmethod
    def from_dict(cls, raw: Mapping[str, object] | None) -> HealthThresholds:
        if not raw:
            return cls()
        defaults = cls()
        values: dict[str, float | int] = {}
        for name in (
            "max_error_rate_increase",
            "max_no_fill_rate_increase",
            "max_load_failure_rate_increase",
            "min_requests",
        ):
            value = raw.get(name, getattr(defaults, name))
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise PlanError(f"thresholds.{name}: must be a number >= 0, got {value!r}")
            values[name] = int(value) if name == "min_requests" else float(value)
        return cls(**values)  # type: ignore[arg-type]


def health_regression(
    new: CohortHealth, previous: CohortHealth, thresholds: HealthThresholds
) -> str | None:
    """Why the new cohort is worse than the previous one, or ``None`` if it is not."""
    if new.requests < thresholds.min_requests:
        return None
    checks = (
        ("error rate", new.errors, new.requests, previous.errors, previous.requests,
         thresholds.max_error_rate_increase),
        ("no-fill rate", new.no_fills, new.requests, previous.no_fills, previous.requests,
         thresholds.max_no_fill_rate_increase),
        ("load-failure rate", new.load_failures, new.loads, previous.load_failures,
         previous.loads, thresholds.max_load_failure_rate_increase),
    )  # fmt: skip
    for name, part, whole, old_part, old_whole, allowed in checks:
        if not whole:
            continue
        now_rate, old_rate = new.rate(part, whole), previous.rate(old_part, old_whole)
        if now_rate - old_rate > allowed:
            return (
                f"{name} {now_rate:.1%} against {old_rate:.1%} on the previous version "
                f"(allowed increase {allowed:.1%})"
            )
    return None


def next_step(
    operation: Operation,
    now_ms: int,
    *,
    config_errors: Sequence[str] | None = None,
    regression: str | None = None,
) -> Step | None:
    """What the publish worker does next with ``operation``, or ``None`` (wait).

    ``config_errors``: the validation verdict, asked for in ``validating``.
    ``regression``: the health gate's verdict on the current stage, asked
    for once its dwell has passed.
    """
    state, stage, plan = operation.state, operation.stage, operation.plan
    if state == PENDING:
        return Step(VALIDATING, 0, 0, "picked up by a publish worker")
    if state == VALIDATING:
        if config_errors is None:
            return None
        if config_errors:
            return Step(FAILED, 0, 0, "invalid config: " + "; ".join(config_errors))
        return Step(ROLLING_OUT, 0, plan[0].percent, f"valid; stage 1 of {len(plan)}")
    if state == ROLLING_OUT:
        current = plan[min(stage, len(plan) - 1)]
        if now_ms - operation.stage_started_ms < current.dwell_ms:
            return None
        if regression is not None:
            return Step(ROLLING_BACK, stage, 0, f"health gate at {current.percent}%: {regression}")
        if stage + 1 >= len(plan):
            return Step(PUBLISHED, stage, 100, "all stages passed the health gate")
        following = plan[stage + 1]
        return Step(
            ROLLING_OUT,
            stage + 1,
            following.percent,
            f"stage {stage + 1} at {current.percent}% healthy; stage {stage + 2} of {len(plan)}",
        )
    if state == ROLLING_BACK:
        return Step(ROLLED_BACK, stage, 0, "previous version restored for every device")
    return None  # published, failed, rolled back: nothing to do


def config_diff(before: object, after: object, path: str = "") -> list[tuple[str, object, object]]:
    """Every changed leaf between two config bodies: ``(path, before, after)``.

    Objects are compared key by key (a missing key shows as ``None``); lists
    are compared by index. Sorted by path, so the output is stable.
    """
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[tuple[str, object, object]] = []
        for key in sorted(set(before) | set(after)):
            sub = f"{path}.{key}" if path else str(key)
            changes.extend(config_diff(before.get(key), after.get(key), sub))
        return changes
    if isinstance(before, list) and isinstance(after, list):
        changes = []
        for i in range(max(len(before), len(after))):
            changes.extend(
                config_diff(
                    before[i] if i < len(before) else None,
                    after[i] if i < len(after) else None,
                    f"{path}[{i}]",
                )
            )
        return changes
    if before == after and type(before) is type(after):
        return []
    return [(path, before, after)]
