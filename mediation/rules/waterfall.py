"""Choosing the waterfall for one sync request from a published config.

A config snapshot body (validated when stored) looks like::

    {"closure_window_ms": 1800000, "grace_ms": 30000, "skew_tolerance_ms": 300000,
     "max_waterfall_depth": 5, "sources": {"net_a": {}},
     "rate_limits": {"requests_per_s": 5000, "event_batches_per_s": 2000},
     "placements": {"home_banner": {"waterfall": [
         {"source_id": "net_a", "floor_micros": 1500000, "timeout_ms": 1500,
          "countries": ["US", "CA"], "os": ["ios"]}]}}}

Targeting lists are optional; an entry without one matches everyone.
``degradation_profiles`` (optional) names overrides an operator can switch
on for an app under load (seed section 6)::

    "degradation_profiles": {"lite": {"max_waterfall_depth": 2, "max_timeout_ms": 800,
                                      "sample_event_types": {"closed": 0.1, "error": 0.1}}}

``sources`` is optional; when present, every waterfall entry must name one
of its keys (a typo in a source id is then an error, not a dead entry).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import field, replace

from ..errors import InputError
from .model import EVENT_TYPES, WaterfallEntry
from .records import python_class, record

__all__ = [
    "SAMPLEABLE_EVENT_TYPES",
    "ConfigError",
    "DegradationProfile",
    "PlacementConfig",
    "RuntimeConfig",
    "choose_waterfall",
    "degrade",
    "keeps_event",
    "parse_config",
    "validate_config",
]

DEFAULT_CLOSURE_WINDOW_MS = 30 * 60 * 1000
DEFAULT_GRACE_MS = 30 * 1000
DEFAULT_SKEW_TOLERANCE_MS = 5 * 60 * 1000
DEFAULT_MAX_DEPTH = 5
_DAY_MS = 24 * 3600 * 1000
_WEEK_MS = 7 * _DAY_MS
# Per app, across all gateway processes; generous defaults (the seed's peak
# is 200 requests/s for the whole fleet).
DEFAULT_REQUESTS_PER_S = 5000
DEFAULT_EVENT_BATCHES_PER_S = 2000


@python_class
class ConfigError(InputError):
    """A config snapshot body is invalid; ``errors`` lists every problem."""

    code = "config_invalid"

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@record
class _TargetedEntry:
    entry: WaterfallEntry
    countries: frozenset[str] | None
    os: frozenset[str] | None


@record
class PlacementConfig:
    entries: tuple[_TargetedEntry, ...]


# Only these may be sampled: they never change an archive record's revenue,
# outcome or attribution (section 6 of the contracts).
SAMPLEABLE_EVENT_TYPES = ("closed", "error")
_PROFILE_NAME = re.compile(r"[a-z0-9_-]{1,32}\Z")


@record
class DegradationProfile:
    """Overrides of a config while an operator has the profile switched on."""

    max_waterfall_depth: int | None = None
    max_timeout_ms: int | None = None
    # event type -> share of its events kept (0..1), decided per event_id
    sample_event_types: Mapping[str, float] = field(default_factory=dict)


@record
class RuntimeConfig:
    """A parsed config snapshot, ready for the request path."""

    version: int
    closure_window_ms: int
    grace_ms: int
    skew_tolerance_ms: int
    max_waterfall_depth: int
    requests_per_s: int
    event_batches_per_s: int
    placements: Mapping[str, PlacementConfig]
    degradation_profiles: Mapping[str, DegradationProfile] = field(default_factory=dict)


def _positive_int(
    body: Mapping[str, object],
    key: str,
    default: int,
    errors: list[str],
    where: str = "",
    maximum: int = 2**31 - 1,
) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        errors.append(f"{where}{key}: must be an integer in 1..{maximum}, got {value!r}")
        return default
    return value


def _str_set(raw: object, where: str, errors: list[str]) -> frozenset[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        errors.append(f"{where}: must be a list of strings")
        return None
    return frozenset(raw)


def parse_config(version: int, body: Mapping[str, object]) -> RuntimeConfig:
    """Validate a snapshot body; raise ``ConfigError`` listing every problem."""
    errors: list[str] = []
    closure = _positive_int(
        body, "closure_window_ms", DEFAULT_CLOSURE_WINDOW_MS, errors, maximum=_WEEK_MS
    )
    grace = _positive_int(body, "grace_ms", DEFAULT_GRACE_MS, errors, maximum=_DAY_MS)
    skew = _positive_int(
        body, "skew_tolerance_ms", DEFAULT_SKEW_TOLERANCE_MS, errors, maximum=_DAY_MS
    )
    depth = _positive_int(body, "max_waterfall_depth", DEFAULT_MAX_DEPTH, errors, maximum=50)
    limits = body.get("rate_limits", {})
    if not isinstance(limits, dict):
        errors.append("rate_limits: must be an object")
        limits = {}
    requests_per_s = _positive_int(
        limits, "requests_per_s", DEFAULT_REQUESTS_PER_S, errors, "rate_limits."
    )
    batches_per_s = _positive_int(
        limits, "event_batches_per_s", DEFAULT_EVENT_BATCHES_PER_S, errors, "rate_limits."
    )
    raw_placements = body.get("placements")
    placements: dict[str, PlacementConfig] = {}
    if not isinstance(raw_placements, dict) or not raw_placements:
        errors.append("placements: must be a non-empty object")
        raw_placements = {}
    for placement_id, raw in raw_placements.items():
        where = f"placements.{placement_id}"
        waterfall = raw.get("waterfall") if isinstance(raw, dict) else None
        if not isinstance(waterfall, list):
            errors.append(f"{where}.waterfall: must be a list")
            continue
        entries: list[_TargetedEntry] = []
        for i, item in enumerate(waterfall):
            at = f"{where}.waterfall[{i}]"
            if not isinstance(item, dict):
                errors.append(f"{at}: must be an object")
                continue
            source_id = item.get("source_id")
            floor = item.get("floor_micros")
            timeout = item.get("timeout_ms")
            if not isinstance(source_id, str) or not source_id:
                errors.append(f"{at}.source_id: must be a non-empty string")
                continue
            if isinstance(floor, bool) or not isinstance(floor, int) or not 0 <= floor < 2**53:
                errors.append(f"{at}.floor_micros: must be an integer >= 0, got {floor!r}")
                continue
            if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 < timeout < 2**31:
                errors.append(f"{at}.timeout_ms: must be a positive integer, got {timeout!r}")
                continue
            entries.append(
                _TargetedEntry(
                    WaterfallEntry(source_id, floor, timeout),
                    _str_set(item.get("countries"), f"{at}.countries", errors),
                    _str_set(item.get("os"), f"{at}.os", errors),
                )
            )
        placements[placement_id] = PlacementConfig(tuple(entries))
    profiles = _parse_profiles(body.get("degradation_profiles"), errors)
    if errors:
        raise ConfigError(errors)
    return RuntimeConfig(
        version, closure, grace, skew, depth, requests_per_s, batches_per_s, placements, profiles
    )


def _parse_profiles(raw: object, errors: list[str]) -> dict[str, DegradationProfile]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.append("degradation_profiles: must be an object of named profiles")
        return {}
    profiles = {}
    for name, spec in raw.items():
        where = f"degradation_profiles.{name}"
        if not isinstance(name, str) or not _PROFILE_NAME.match(name):
            errors.append(f"{where}: names are 1..32 of a-z, 0-9, _ and -")
            continue
        if not isinstance(spec, dict):
            errors.append(f"{where}: must be an object")
            continue
        unknown = set(spec) - {"max_waterfall_depth", "max_timeout_ms", "sample_event_types"}
        if unknown:
            errors.append(f"{where}: unknown setting(s) {sorted(unknown)}")
        depth = timeout = None
        if "max_waterfall_depth" in spec:
            depth = _positive_int(spec, "max_waterfall_depth", 1, errors, where + ".", maximum=50)
        if "max_timeout_ms" in spec:
            timeout = _positive_int(spec, "max_timeout_ms", 1, errors, where + ".", maximum=600_000)
        sampling: dict[str, float] = {}
        raw_sampling = spec.get("sample_event_types", {})
        if not isinstance(raw_sampling, dict):
            errors.append(f"{where}.sample_event_types: must be an object of type -> share")
            raw_sampling = {}
        for event_type, share in raw_sampling.items():
            at = f"{where}.sample_event_types.{event_type}"
            if event_type not in SAMPLEABLE_EVENT_TYPES:
                allowed = ", ".join(SAMPLEABLE_EVENT_TYPES)
                known = "" if event_type in EVENT_TYPES else "unknown event type; "
                errors.append(f"{at}: {known}only {allowed} events may be sampled")
            elif (
                isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1
            ):
                errors.append(f"{at}: the share kept must be a number in 0..1")
            else:
                sampling[event_type] = float(share)
        profiles[name] = DegradationProfile(depth, timeout, sampling)
    return profiles


def degrade(config: RuntimeConfig, profile: DegradationProfile) -> RuntimeConfig:
    """``config`` with ``profile``'s overrides: shorter waterfalls, capped timeouts."""
    depth = config.max_waterfall_depth
    if profile.max_waterfall_depth is not None:
        depth = min(depth, profile.max_waterfall_depth)
    placements = config.placements
    cap = profile.max_timeout_ms
    if cap is not None:
        placements = {
            placement_id: PlacementConfig(
                tuple(
                    replace(t, entry=replace(t.entry, timeout_ms=min(t.entry.timeout_ms, cap)))
                    for t in placement.entries
                )
            )
            for placement_id, placement in config.placements.items()
        }
    return replace(config, max_waterfall_depth=depth, placements=placements)


def keeps_event(event_id: str, share: float) -> bool:
    """Whether sampling at ``share`` keeps this event: the same answer for every copy."""
    if share >= 1:
        return True
    digest = hashlib.sha256(event_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def validate_config(body: Mapping[str, object]) -> list[str]:
    """Every problem of a body about to be stored or published (empty: valid).

    ``parse_config``'s checks (what the request path needs to serve it), plus
    checks of intent that a stored config is not refused for at serving
    time: an empty waterfall, a source listed twice in one waterfall, and,
    when the body declares ``sources``, a waterfall naming an undeclared one.
    """
    try:
        parse_config(1, body)
        errors: list[str] = []
    except ConfigError as exc:
        errors = list(exc.errors)
    declared = body.get("sources")
    if declared is not None and not isinstance(declared, dict):
        errors.append("sources: must be an object keyed by source id")
        declared = None
    placements = body.get("placements")
    for placement_id, raw in placements.items() if isinstance(placements, dict) else ():
        waterfall = raw.get("waterfall") if isinstance(raw, dict) else None
        if not isinstance(waterfall, list):
            continue  # reported by parse_config
        if not waterfall:
            errors.append(f"placements.{placement_id}.waterfall: must not be empty")
        seen: set[str] = set()
        for i, item in enumerate(waterfall):
            source_id = item.get("source_id") if isinstance(item, dict) else None
            if not isinstance(source_id, str) or not source_id:
                continue  # reported by parse_config
            at = f"placements.{placement_id}.waterfall[{i}].source_id"
            if declared is not None and source_id not in declared:
                errors.append(f"{at}: unknown source {source_id!r} (not in sources)")
            if source_id in seen:
                errors.append(f"{at}: {source_id!r} appears twice in this waterfall")
            seen.add(source_id)
    return errors


def choose_waterfall(
    config: RuntimeConfig, placement_id: str, context: Mapping[str, str]
) -> tuple[WaterfallEntry, ...] | None:
    """Eligible sources for one request, highest floor first, capped in depth.

    ``None`` means the placement is unknown to this config; an empty tuple
    means nothing is eligible (no fill).
    """
    placement = config.placements.get(placement_id)
    if placement is None:
        return None
    country = context.get("country")
    os_name = context.get("os")
    eligible = [
        targeted.entry
        for targeted in placement.entries
        if (targeted.countries is None or country in targeted.countries)
        and (targeted.os is None or os_name in targeted.os)
    ]
    # sorted() is stable: equal floors keep their configured order.
    eligible.sort(key=lambda entry: -entry.floor_micros)
    return tuple(eligible[: config.max_waterfall_depth])
