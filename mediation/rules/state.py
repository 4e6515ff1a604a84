"""The per-opportunity state machine the worker drives.

Shape: ``(state | None, item, now_ms) -> (state | None, outputs)``, as in
Bytewax's ``stateful_map``; ``None`` as the new state means "forget this
key". Time is always an argument (``now_ms``), never read from a clock.

Lifecycle of one ``opportunity_key``:

1. ``Open``: the opportunity and/or events are buffered (events
   deduplicated). It is due at its close time plus the allowed lateness; an
   open key without its opportunity is due when a default window would have
   closed, and then its events become orphans.
2. ``Archived``: after the closing record was emitted, a tombstone remembers
   which events were seen so that later copies are absorbed and new events
   are emitted as ``late``. It is forgotten after ``tombstone_ttl_ms``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from .closure import EXCLUDED_UNKNOWN_OPPORTUNITY, close_at_ms, close_opportunity
from .model import (
    DeadLetter,
    Event,
    LateEvent,
    Opportunity,
    OrphanEvents,
    Output,
    Policy,
    StoredEvent,
    event_as_dict,
)
from .records import record
from .ulid import ulid_time_ms

__all__ = [
    "DUPLICATE_CONFLICT",
    "OPPORTUNITY_APP_MISMATCH",
    "TOO_MANY_EVENTS",
    "TOO_MANY_ORPHANS",
    "Archived",
    "Open",
    "OpportunityState",
    "drain",
    "due_at_ms",
    "from_snapshot",
    "on_event",
    "on_opportunity",
    "on_tick",
    "orphan_holder",
]

DUPLICATE_CONFLICT = "duplicate_conflict"
TOO_MANY_EVENTS = "too_many_events"
TOO_MANY_ORPHANS = "too_many_orphans"
_MAX_CONFLICTING_COPIES = 8
OPPORTUNITY_APP_MISMATCH = "opportunity_app_mismatch"

_EMPTY: tuple[Output, ...] = ()


EventKey = tuple[str, str]  # (app_id, event_id): event ids are unique per app


@record
class Open:
    opportunity_key: str
    opportunity: Opportunity | None
    # Every copy kept: per (app_id, event_id), one copy per distinct content,
    # each the earliest received copy of that content, in arrival order.
    # Conflicts are settled at close, so which copy wins never depends on the
    # order copies arrive in. A flat tuple, not a dict by event key: an
    # opportunity holds a handful of events, and with hundreds of thousands
    # open, a dict and two tuples per event were a sixth of the worker's
    # memory. Scans are linear, bounded by ``max_events_per_opportunity``.
    events: tuple[Event, ...]

    def winners(self) -> tuple[Event, ...]:
        """The copy that counts for each event (the earliest received)."""
        # Hot (the worker asks after every item): usually every key is distinct.
        events = self.events
        if len(events) < 2 or len({_event_key(e) for e in events}) == len(events):
            return events
        best: dict[EventKey, Event] = {}
        for event in events:
            key = _event_key(event)
            kept = best.get(key)
            if kept is None or _copy_rank(event) < _copy_rank(kept):
                best[key] = event
        return tuple(best.values())


@record
class Archived:
    opportunity_key: str
    archived_at_ms: int
    app_id: str
    # (app_id, event_id) -> ``content_digest`` of the copy that was kept
    # (snapshots taken before digests hold ``client_fields`` tuples instead).
    seen: Mapping[EventKey, bytes | tuple[object, ...]]


OpportunityState = Open | Archived


def from_snapshot(state: OpportunityState) -> OpportunityState:
    """A state as restored from a recovery snapshot, in today's shape.

    Snapshots written before ``Open.events`` was a flat tuple hold a dict
    of (app_id, event_id) -> copies in its place; events of snapshots
    written before ``Event.source_*`` lack those fields.
    """
    if isinstance(state, Open) and isinstance(state.events, Mapping):
        flat = tuple(copy for copies in state.events.values() for copy in copies)
        state = Open(state.opportunity_key, state.opportunity, flat)
    if isinstance(state, Open):
        for event in state.events:
            _fill_source_fields(event)
        opportunity = state.opportunity
        if opportunity is not None and not hasattr(opportunity, "source_offset"):
            for name in ("source_partition", "source_offset"):
                object.__setattr__(opportunity, name, None)
    return state


def _fill_source_fields(event: Event) -> None:
    # Snapshots of before ``Event.source_*`` unpickle without them (a slots
    # dataclass restores the fields it was given): unknown, not missing.
    if not hasattr(event, "source_bytes"):
        for name in ("source_partition", "source_offset", "source_bytes"):
            object.__setattr__(event, name, None)


def orphan_holder(state: OpportunityState | None) -> str | None:
    """The app a key is held for while its opportunity has not arrived, else None.

    The app of the first event held: it made the key be held, and later
    events cannot change it (a held key's events only grow).
    """
    if isinstance(state, Open) and state.opportunity is None and state.events:
        return state.events[0].app_id
    return None


def _copy_rank(event: Event) -> tuple[int, int, str]:
    # The earliest received copy wins; ties broken by content so that the
    # choice never depends on the order copies arrive in.
    return (event.received_at_ms, event.server_ts_ms, repr(event.client_fields()))


def _event_key(event: Event) -> EventKey:
    return (event.app_id, event.event_id)


def on_opportunity(
    state: OpportunityState | None, opportunity: Opportunity, now_ms: int, policy: Policy
) -> tuple[OpportunityState | None, tuple[Output, ...]]:
    """An opportunity+delivery record arrived (possibly again)."""
    if isinstance(state, Archived):
        # Re-delivery after close: the archive record already stands.
        return state, _EMPTY
    if state is None:
        return Open(opportunity.opportunity_key, opportunity, ()), _EMPTY
    if state.opportunity is not None:
        return state, _EMPTY  # duplicate delivery of the same sync request
    app_id = opportunity.app_id
    kept = tuple(event for event in state.events if event.app_id == app_id)
    outputs = tuple(
        _app_mismatch(event, opportunity) for event in state.events if event.app_id != app_id
    )
    return Open(state.opportunity_key, opportunity, kept), outputs


def on_event(
    state: OpportunityState | None,
    event: Event,
    now_ms: int,
    policy: Policy,
    held_orphan_keys: int = 0,
) -> tuple[OpportunityState | None, tuple[Output, ...]]:
    """An SDK event arrived (possibly a resent copy).

    ``held_orphan_keys``: how many keys the event's app holds already
    without their opportunity (the caller counts them across keys); a new
    key beyond ``policy.max_orphan_keys_per_app`` is refused.
    """
    if isinstance(state, Archived):
        return _on_event_after_archive(state, event)
    if state is None:
        if held_orphan_keys >= policy.max_orphan_keys_per_app:
            return None, (
                _refused(
                    event,
                    TOO_MANY_ORPHANS,
                    f"app {event.app_id!r} already holds events for "
                    f"{policy.max_orphan_keys_per_app} keys whose opportunity has not arrived",
                ),
            )
        return Open(event.opportunity_key, None, (event,)), _EMPTY
    if state.opportunity is not None and event.app_id != state.opportunity.app_id:
        return state, (_app_mismatch(event, state.opportunity),)
    events = state.events
    event_id, app_id = event.event_id, event.app_id
    same_id = [i for i, e in enumerate(events) if e.event_id == event_id and e.app_id == app_id]
    if same_id:  # hot path skips this: most events arrive once
        fields = event.client_fields()
        for index in same_id:
            copy = events[index]
            if copy.client_fields() == fields:
                if _copy_rank(event) >= _copy_rank(copy):
                    return state, _EMPTY  # a resend: absorbed
                replaced = (*events[:index], event, *events[index + 1 :])
                return Open(state.opportunity_key, state.opportunity, replaced), _EMPTY
        if len(same_id) >= _MAX_CONFLICTING_COPIES:
            return state, (
                _refused(
                    event,
                    DUPLICATE_CONFLICT,
                    f"event_id {event.event_id!r} already has "
                    f"{_MAX_CONFLICTING_COPIES} conflicting copies",
                ),
            )
    # Bounded state: a flood on one key must not stall the worker (the cost
    # of an opportunity grows with its events). Only hostile or broken
    # clients get here; which copies are refused then depends on arrival
    # order.
    if len(events) >= policy.max_events_per_opportunity:
        return state, (
            _refused(
                event,
                TOO_MANY_EVENTS,
                f"opportunity already holds {policy.max_events_per_opportunity} events",
            ),
        )
    return Open(state.opportunity_key, state.opportunity, (*events, event)), _EMPTY


def _settle_conflicts(state: Open) -> tuple[tuple[Event, ...], tuple[Output, ...]]:
    """The winning copy of every event, and a dead letter per losing content."""
    events = state.events
    if len({_event_key(e) for e in events}) == len(events):
        return events, _EMPTY  # the common case: nothing to rank
    copies: dict[EventKey, list[Event]] = {}
    for event in events:
        copies.setdefault(_event_key(event), []).append(event)
    winners: list[Event] = []
    letters: list[Output] = []
    for same_event in copies.values():
        ranked = sorted(same_event, key=_copy_rank)
        winners.append(ranked[0])
        letters.extend(_duplicate_conflict(loser, ranked[0]) for loser in ranked[1:])
    return tuple(winners), tuple(letters)


def on_tick(
    state: OpportunityState | None, now_ms: int, policy: Policy
) -> tuple[OpportunityState | None, tuple[Output, ...]]:
    """Time passed: close, orphan or forget whatever is due."""
    due = due_at_ms(state, policy)
    if state is None or due is None or now_ms < due:
        return state, _EMPTY
    if isinstance(state, Archived):
        return None, _EMPTY
    winners, letters = _settle_conflicts(state)
    if state.opportunity is None:
        orphans = tuple(
            StoredEvent(event, excluded_reason=EXCLUDED_UNKNOWN_OPPORTUNITY)
            for event in sorted(winners, key=lambda e: (e.server_ts_ms, e.event_id, e.app_id))
        )
        return None, (*letters, OrphanEvents(state.opportunity_key, orphans))
    closed = close_opportunity(state.opportunity, winners)
    tombstone = Archived(
        opportunity_key=state.opportunity_key,
        archived_at_ms=now_ms,
        app_id=state.opportunity.app_id,
        seen={_event_key(e): e.content_digest() for e in winners},
    )
    return tombstone, (*letters, closed)


def drain(
    state: OpportunityState | None, policy: Policy
) -> tuple[OpportunityState | None, tuple[Output, ...]]:
    """Close whatever is open as if its time had come (finite inputs, tests)."""
    due = due_at_ms(state, policy)
    if due is None:
        return state, _EMPTY
    return on_tick(state, due, policy)


def due_at_ms(state: OpportunityState | None, policy: Policy) -> int | None:
    """The processing time at which ``on_tick`` has work for this state."""
    if state is None:
        return None
    if isinstance(state, Archived):
        return state.archived_at_ms + policy.tombstone_ttl_ms
    if state.opportunity is None:
        key_time = ulid_time_ms(state.opportunity_key)
        return key_time + policy.default_closure_window_ms + policy.allowed_lateness_ms
    closes_at, _reason = close_at_ms(state.opportunity, state.winners())
    return closes_at + policy.allowed_lateness_ms


def _on_event_after_archive(
    state: Archived, event: Event
) -> tuple[OpportunityState | None, tuple[Output, ...]]:
    if event.app_id != state.app_id:
        return state, (
            DeadLetter(
                reason=OPPORTUNITY_APP_MISMATCH,
                detail=f"event app {event.app_id!r} does not own opportunity",
                opportunity_key=event.opportunity_key,
                payload=event_as_dict(event),
                event=event,
            ),
        )
    seen = state.seen.get(_event_key(event))
    if seen is not None:
        same = (
            seen == event.client_fields()
            if isinstance(seen, tuple)
            else seen == event.content_digest()
        )
        if same:
            return state, _EMPTY
        return state, (
            DeadLetter(
                reason=DUPLICATE_CONFLICT,
                detail=f"event_id {event.event_id!r} was already archived with other content",
                opportunity_key=event.opportunity_key,
                payload=event_as_dict(event),
                event=event,
            ),
        )
    seen_now = dict(state.seen)
    seen_now[_event_key(event)] = event.content_digest()
    return replace(state, seen=seen_now), (LateEvent(StoredEvent(event, late=True)),)


def _app_mismatch(event: Event, opportunity: Opportunity) -> DeadLetter:
    return DeadLetter(
        reason=OPPORTUNITY_APP_MISMATCH,
        detail=f"event app {event.app_id!r} does not own opportunity of app {opportunity.app_id!r}",
        opportunity_key=event.opportunity_key,
        payload=event_as_dict(event),
        event=event,
    )


def _refused(event: Event, reason: str, detail: str) -> DeadLetter:
    return DeadLetter(
        reason=reason,
        detail=detail,
        opportunity_key=event.opportunity_key,
        payload=event_as_dict(event),
        event=event,
    )


def _duplicate_conflict(refused: Event, kept: Event) -> DeadLetter:
    return DeadLetter(
        reason=DUPLICATE_CONFLICT,
        detail=f"event_id {refused.event_id!r} has a copy with other content that was "
        f"received earlier (at {kept.received_at_ms}); that copy is kept",
        opportunity_key=refused.opportunity_key,
        payload=event_as_dict(refused),
        event=refused,
    )
