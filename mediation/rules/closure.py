"""Closing one opportunity: window, ordering, attribution, outcome, hash.

``close_opportunity`` is a pure function of an opportunity and the *set* of
its deduplicated events: arrival order never matters because events are
applied sorted by ``(server_ts, event_id)``. The dataflow calls it when an
opportunity's time is up; replay calls it again to recompute.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence

from .model import (
    EVENT_TYPES,
    OUTCOMES,
    ArchiveRecord,
    ClosedOpportunity,
    Event,
    Opportunity,
    StoredEvent,
)

__all__ = [
    "EXCLUDED_CLICK_WITHOUT_IMPRESSION",
    "EXCLUDED_OUT_OF_WINDOW",
    "EXCLUDED_UNKNOWN_OPPORTUNITY",
    "RULE_VERSION",
    "canonical_inputs",
    "close_at_ms",
    "close_opportunity",
    "event_order",
    "inputs_hash",
]

RULE_VERSION = "r1"

EXCLUDED_OUT_OF_WINDOW = "out_of_window"
EXCLUDED_UNKNOWN_OPPORTUNITY = "unknown_opportunity"
# Not in the first contract draft: a click with no earlier impression of the
# same source is stored but does not count; naming why helps disputes.
EXCLUDED_CLICK_WITHOUT_IMPRESSION = "click_without_impression"

_OUTCOME_RANK = {name: rank for rank, name in enumerate(OUTCOMES)}


def event_order(event: Event) -> tuple[int, str]:
    """The one order in which events are applied."""
    return (event.server_ts_ms, event.event_id)


def _in_window_start(opportunity: Opportunity, event: Event) -> bool:
    return event.server_ts_ms >= opportunity.ts_ms - opportunity.skew_tolerance_ms


def close_at_ms(opportunity: Opportunity, events: Iterable[Event]) -> tuple[int, str]:
    """When the opportunity closes (event time) and why.

    It closes at ``ts + closure_window`` unless, inside that window, a
    ``closed`` event was seen, or every waterfall source reported
    ``load_failed``; then it closes a grace period after that moment. An
    empty waterfall (no fill) has nothing to wait for: it closes at
    ``ts + grace``.
    """
    window_end = opportunity.ts_ms + opportunity.closure_window_ms
    if not opportunity.waterfall:
        return min(window_end, opportunity.ts_ms + opportunity.grace_ms), "all_sources_failed"
    first_closed: int | None = None
    first_failure: dict[str, int] = {}
    waterfall_sources = {entry.source_id for entry in opportunity.waterfall}
    for event in events:
        if not _in_window_start(opportunity, event) or event.server_ts_ms > window_end:
            continue
        if event.type == "closed":
            if first_closed is None or event.server_ts_ms < first_closed:
                first_closed = event.server_ts_ms
        elif event.type == "load_failed" and event.source_id in waterfall_sources:
            previous = first_failure.get(event.source_id)
            if previous is None or event.server_ts_ms < previous:
                first_failure[event.source_id] = event.server_ts_ms
    # A terminal event stamped before the opportunity (device clock within
    # the skew tolerance) counts as happening at the opportunity's time.
    candidates: list[tuple[int, str]] = []
    if first_closed is not None:
        closed_at = max(first_closed, opportunity.ts_ms)
        candidates.append((closed_at + opportunity.grace_ms, "closed_event"))
    if len(first_failure) == len(waterfall_sources):
        all_failed_at = max(opportunity.ts_ms, *first_failure.values())
        candidates.append((all_failed_at + opportunity.grace_ms, "all_sources_failed"))
    if not candidates:
        return window_end, "window_expired"
    earliest = min(candidates)
    if earliest[0] >= window_end:
        return window_end, "window_expired"
    return earliest


def close_opportunity(
    opportunity: Opportunity,
    events: Sequence[Event],
    rule_version: str = RULE_VERSION,
) -> ClosedOpportunity:
    """Build the closing record from an opportunity and its distinct events.

    ``events`` must already be deduplicated (one copy per ``event_id``).
    Every event is returned as a ``StoredEvent``; the ones that do not count
    carry an ``excluded_reason``.
    """
    if rule_version != RULE_VERSION:
        raise ValueError(f"unknown rule_version {rule_version!r}; known: {RULE_VERSION!r}")
    closed_at, close_reason = close_at_ms(opportunity, events)
    window_start = opportunity.ts_ms - opportunity.skew_tolerance_ms

    counts = dict.fromkeys(EVENT_TYPES, 0)
    outcome_rank = 0
    rewarded = False
    first_impression_source: str | None = None
    first_loaded_source: str | None = None
    impressed_sources: set[str | None] = set()
    revenue_micros = 0
    currency: str | None = None
    counted: list[Event] = []
    stored: list[StoredEvent] = []

    for event in sorted(events, key=event_order):
        if not window_start <= event.server_ts_ms <= closed_at:
            stored.append(StoredEvent(event, excluded_reason=EXCLUDED_OUT_OF_WINDOW))
            continue
        if event.type == "click" and event.source_id not in impressed_sources:
            stored.append(StoredEvent(event, excluded_reason=EXCLUDED_CLICK_WITHOUT_IMPRESSION))
            continue
        stored.append(StoredEvent(event))
        counted.append(event)
        counts[event.type] += 1
        if event.type == "load_failed":
            outcome_rank = max(outcome_rank, _OUTCOME_RANK["load_failed"])
        elif event.type == "loaded":
            outcome_rank = max(outcome_rank, _OUTCOME_RANK["loaded"])
            if first_loaded_source is None:
                first_loaded_source = event.source_id
        elif event.type == "impression":
            outcome_rank = max(outcome_rank, _OUTCOME_RANK["impressed"])
            impressed_sources.add(event.source_id)
            if first_impression_source is None:
                first_impression_source = event.source_id
            if event.revenue_micros:
                revenue_micros += event.revenue_micros
                if currency is None:
                    currency = event.currency
        elif event.type == "click":
            outcome_rank = max(outcome_rank, _OUTCOME_RANK["clicked"])
        elif event.type == "reward":
            rewarded = True

    credited = (
        first_impression_source if first_impression_source is not None else (first_loaded_source)
    )
    archive = ArchiveRecord(
        opportunity_key=opportunity.opportunity_key,
        app_id=opportunity.app_id,
        placement_id=opportunity.placement_id,
        opened_at_ms=opportunity.ts_ms,
        closed_at_ms=closed_at,
        close_reason=close_reason,
        outcome=OUTCOMES[outcome_rank],
        rewarded=rewarded,
        credited_source_id=credited,
        revenue_micros=revenue_micros,
        currency=currency,
        counts={name: n for name, n in counts.items() if n},
        counted_events=len(counted),
        excluded_events=len(stored) - len(counted),
        config_version=opportunity.config_version,
        rule_version=rule_version,
        inputs_hash=inputs_hash(opportunity, counted),
    )
    return ClosedOpportunity(opportunity=opportunity, events=tuple(stored), archive=archive)


# The canonical form is json.dumps(document, sort_keys=True, separators=(",",
# ":"), ensure_ascii=False) of {"events": [...], "opportunity": {...}}. It is
# written here field by field, keys already in sorted order (the closing of
# every opportunity computes it; building dicts for json.dumps cost several
# times more). tests/rules/test_closure.py checks it byte for byte against
# json.dumps of the document.
_quote = json.encoder.encode_basestring  # what json.dumps uses with ensure_ascii=False


def _json_scalar(value: str | int | None) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return _quote(value)
    return int.__repr__(value)


def _canonical_attrs(attrs: Mapping[str, object]) -> str:
    if not attrs:
        return "{}"
    return json.dumps(dict(attrs), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical_event(event: Event) -> str:
    return (
        f'{{"attrs":{_canonical_attrs(event.attrs)},"currency":{_json_scalar(event.currency)},'
        f'"event_id":{_quote(event.event_id)},'
        f'"revenue_micros":{_json_scalar(event.revenue_micros)},'
        f'"server_ts_ms":{event.server_ts_ms!r},"source_id":{_json_scalar(event.source_id)},'
        f'"ts_ms":{event.ts_ms!r},"type":{_quote(event.type)}}}'
    )


def canonical_inputs(opportunity: Opportunity, counted: Iterable[Event]) -> str:
    """The canonical JSON ``inputs_hash`` is taken over (see above)."""
    waterfall = ",".join(
        f"[{_quote(e.source_id)},{e.floor_micros!r},{e.timeout_ms!r}]"
        for e in opportunity.waterfall
    )
    events = ",".join(_canonical_event(event) for event in sorted(counted, key=event_order))
    return (
        f'{{"events":[{events}],"opportunity":{{"app_id":{_quote(opportunity.app_id)},'
        f'"config_version":{opportunity.config_version!r},'
        f'"opportunity_key":{_quote(opportunity.opportunity_key)},'
        f'"placement_id":{_quote(opportunity.placement_id)},"status":{_quote(opportunity.status)},'
        f'"ts_ms":{opportunity.ts_ms!r},"waterfall":[{waterfall}]}}}}'
    )


def inputs_hash(opportunity: Opportunity, counted: Iterable[Event]) -> str:
    """SHA-256 of the canonical inputs that were counted.

    Canonical: sorted keys, no whitespace, events in their applied order.
    ``received_at`` is left out on purpose: it is when *a copy* arrived,
    and the surviving copy must not change the hash.
    """
    return hashlib.sha256(canonical_inputs(opportunity, counted).encode("utf-8")).hexdigest()
