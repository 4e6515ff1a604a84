"""Closing one opportunity: window, ordering, attribution, outcome, hash.

``close_opportunity`` is a pure function of an opportunity and the *set* of
its deduplicated events: arrival order never matters because events are
applied sorted by ``(server_ts, event_id)``. The dataflow calls it when an
opportunity's time is up; replay calls it again to recompute.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from .model import (
    EVENT_TYPES,
    OUTCOMES,
    ArchiveRecord,
    ClosedOpportunity,
    Event,
    Opportunity,
    StoredEvent,
    WaterfallEntry,
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
_RANK_LOAD_FAILED: Final = _OUTCOME_RANK["load_failed"]
_RANK_LOADED: Final = _OUTCOME_RANK["loaded"]
_RANK_IMPRESSED: Final = _OUTCOME_RANK["impressed"]
_RANK_CLICKED: Final = _OUTCOME_RANK["clicked"]
# event_order as a C key function (sorting calls it once per event).
_EVENT_ORDER: Final = operator.attrgetter("server_ts_ms", "event_id")


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
    # In event_order: the inputs hash takes them in that order too.
    counted: list[Event] = []
    stored: list[StoredEvent] = []

    for event in sorted(events, key=_EVENT_ORDER) if len(events) > 1 else events:
        kind = event.type
        server_ts = event.server_ts_ms
        if not window_start <= server_ts <= closed_at:
            stored.append(StoredEvent(event, False, EXCLUDED_OUT_OF_WINDOW))
            continue
        if kind == "click" and event.source_id not in impressed_sources:
            stored.append(StoredEvent(event, False, EXCLUDED_CLICK_WITHOUT_IMPRESSION))
            continue
        stored.append(StoredEvent(event))
        counted.append(event)
        counts[kind] += 1
        if kind == "load_failed":
            outcome_rank = max(outcome_rank, _RANK_LOAD_FAILED)
        elif kind == "loaded":
            outcome_rank = max(outcome_rank, _RANK_LOADED)
            if first_loaded_source is None:
                first_loaded_source = event.source_id
        elif kind == "impression":
            outcome_rank = max(outcome_rank, _RANK_IMPRESSED)
            impressed_sources.add(event.source_id)
            if first_impression_source is None:
                first_impression_source = event.source_id
            revenue = event.revenue_micros
            if revenue:
                revenue_micros += revenue
                if currency is None:
                    currency = event.currency
        elif kind == "click":
            outcome_rank = max(outcome_rank, _RANK_CLICKED)
        elif kind == "reward":
            rewarded = True

    credited = (
        first_impression_source if first_impression_source is not None else first_loaded_source
    )
    # Positional, in ArchiveRecord's field order (keywords cost more on every close).
    archive = ArchiveRecord(
        opportunity.opportunity_key,
        opportunity.app_id,
        opportunity.placement_id,
        opportunity.ts_ms,  # opened_at_ms
        closed_at,
        close_reason,
        OUTCOMES[outcome_rank],
        rewarded,
        credited,  # credited_source_id
        revenue_micros,
        currency,
        {name: n for name, n in counts.items() if n},  # counts
        len(counted),  # counted_events
        len(stored) - len(counted),  # excluded_events
        opportunity.config_version,
        rule_version,
        _hash_in_order(opportunity, counted),  # inputs_hash
    )
    return ClosedOpportunity(opportunity, tuple(stored), archive)


# The canonical form is json.dumps(document, sort_keys=True, separators=(",",
# ":"), ensure_ascii=False) of {"events": [...], "opportunity": {...}}. It is
# written here field by field, keys already in sorted order (the closing of
# every opportunity computes it; building dicts for json.dumps cost several
# times more). tests/rules/test_closure.py checks it byte for byte against
# json.dumps of the document.
_quote: Final = json.encoder.encode_basestring  # what json.dumps uses with ensure_ascii=False
# What json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# builds on every call: made once (an encoder holds no state between calls).
_ATTRS_ENCODER: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# The C encoder that encoder's encode() makes on every call, made once too
# (half of encode()'s time was making it), with the same arguments
# (json/encoder.py, JSONEncoder.iterencode); None where the C
# accelerator is missing. ``_ATTRS_MARKERS`` is its circular-reference
# check: empty after each encode, emptied after a failed one (which leaves
# the containers it was inside of), as encode()'s new dict is.
_ATTRS_MARKERS: Final[dict[int, object]] = {}
_make_c_encoder: Callable[..., Callable[[object, int], list[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)
_ATTRS_C_ENCODER: Final = (
    None
    if _make_c_encoder is None
    else _make_c_encoder(
        _ATTRS_MARKERS, _ATTRS_ENCODER.default, _quote, None, ":", ",", True, False, True
    )
)


def _json_scalar(value: str | int | None) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return _quote(value)
    return int.__repr__(value)


def _canonical_attrs(attrs: Mapping[str, object]) -> str:
    if not attrs:
        return "{}"
    if _ATTRS_C_ENCODER is None:
        return _ATTRS_ENCODER.encode(dict(attrs))
    try:
        return "".join(_ATTRS_C_ENCODER(dict(attrs), 0))
    except BaseException:
        _ATTRS_MARKERS.clear()
        raise


def _canonical_event(event: Event) -> str:
    revenue = event.revenue_micros
    return "".join(
        (
            '{"attrs":',
            _canonical_attrs(event.attrs),
            ',"currency":',
            "null" if event.currency is None else _quote(event.currency),
            ',"event_id":',
            _quote(event.event_id),
            ',"revenue_micros":',
            "null" if revenue is None else int.__repr__(revenue),
            ',"server_ts_ms":',
            repr(event.server_ts_ms),
            ',"source_id":',
            "null" if event.source_id is None else _quote(event.source_id),
            ',"ts_ms":',
            repr(event.ts_ms),
            ',"type":',
            _quote(event.type),
            "}",
        )
    )


# The canonical text of recently seen waterfalls, by the tuple's identity
# (the tuple is kept in the value, so its id cannot be reused while cached):
# the readers and the worker share one tuple per distinct waterfall, which
# every opportunity of a config repeats.
_WATERFALL_TEXTS: Final[dict[int, tuple[tuple[WaterfallEntry, ...], str]]] = {}
_MAX_WATERFALL_TEXTS: Final = 256


def _canonical_waterfall(waterfall: tuple[WaterfallEntry, ...]) -> str:
    cached = _WATERFALL_TEXTS.get(id(waterfall))
    if cached is not None and cached[0] is waterfall:
        return cached[1]
    text = ",".join(
        [f"[{_quote(e.source_id)},{e.floor_micros!r},{e.timeout_ms!r}]" for e in waterfall]
    )
    if len(_WATERFALL_TEXTS) >= _MAX_WATERFALL_TEXTS:
        _WATERFALL_TEXTS.clear()
    _WATERFALL_TEXTS[id(waterfall)] = (waterfall, text)
    return text


def _canonical_in_order(opportunity: Opportunity, ordered: Sequence[Event]) -> str:
    """The canonical inputs of events already in ``event_order``."""
    waterfall = _canonical_waterfall(opportunity.waterfall)
    events = ",".join([_canonical_event(event) for event in ordered])
    return "".join(
        (
            '{"events":[',
            events,
            '],"opportunity":{"app_id":',
            _quote(opportunity.app_id),
            ',"config_version":',
            repr(opportunity.config_version),
            ',"opportunity_key":',
            _quote(opportunity.opportunity_key),
            ',"placement_id":',
            _quote(opportunity.placement_id),
            ',"status":',
            _quote(opportunity.status),
            ',"ts_ms":',
            repr(opportunity.ts_ms),
            ',"waterfall":[',
            waterfall,
            "]}}",
        )
    )


def canonical_inputs(opportunity: Opportunity, counted: Iterable[Event]) -> str:
    """The canonical JSON ``inputs_hash`` is taken over (see above)."""
    return _canonical_in_order(opportunity, sorted(counted, key=event_order))


def _hash_in_order(opportunity: Opportunity, ordered: Sequence[Event]) -> str:
    return hashlib.sha256(_canonical_in_order(opportunity, ordered).encode("utf-8")).hexdigest()


def inputs_hash(opportunity: Opportunity, counted: Iterable[Event]) -> str:
    """SHA-256 of the canonical inputs that were counted.

    Canonical: sorted keys, no whitespace, events in their applied order.
    ``received_at`` is left out on purpose: it is when *a copy* arrived,
    and the surviving copy must not change the hash.
    """
    return _hash_in_order(opportunity, sorted(counted, key=event_order))
