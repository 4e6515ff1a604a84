from __future__ import annotations

import dataclasses

import pytest

from mediation.rules import (
    Archived,
    ClosedOpportunity,
    DeadLetter,
    Event,
    LateEvent,
    Open,
    OrphanEvents,
    Policy,
    StoredEvent,
    close_opportunity,
    drain,
    due_at_ms,
    from_snapshot,
    on_event,
    on_opportunity,
    on_tick,
)
from mediation.rules.closure import EXCLUDED_UNKNOWN_OPPORTUNITY
from mediation.rules.state import DUPLICATE_CONFLICT, OPPORTUNITY_APP_MISMATCH
from mediation.rules.ulid import ulid_time_ms

POLICY = Policy(
    default_closure_window_ms=600_000,
    default_grace_ms=10_000,
    default_skew_tolerance_ms=60_000,
    allowed_lateness_ms=5_000,
    tombstone_ttl_ms=3_600_000,
)


def _feed(state, items, now_ms=0):
    """Feed opportunities and events in order; return the state and all outputs."""
    outputs = []
    for item in items:
        if hasattr(item, "event_id"):
            state, out = on_event(state, item, now_ms, POLICY)
        else:
            state, out = on_opportunity(state, item, now_ms, POLICY)
        outputs.extend(out)
    return state, outputs


def _resend(event, delay_ms=5_000):
    """The same event sent again later: new received_at, new sent_at skew."""
    return dataclasses.replace(
        event,
        received_at_ms=event.received_at_ms + delay_ms,
        server_ts_ms=event.server_ts_ms + 3,
    )


def _closed_archive(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(event_id="l", type="loaded", at=1_000),
        make_event(event_id="i", type="impression", at=2_000),
    ]
    state, _ = _feed(None, [opp, *events])
    state, (closed,) = drain(state, POLICY)
    assert isinstance(state, Archived)
    return opp, events, state, closed


# --- the happy path ------------------------------------------------------------------------


def test_opportunity_then_events_then_tick_after_due_closes_and_leaves_tombstone(
    make_opportunity, make_event
):
    opp = make_opportunity()
    events = [
        make_event(event_id="l", type="loaded", at=1_000),
        make_event(event_id="i", type="impression", at=2_000, revenue_micros=30, currency="USD"),
        make_event(event_id="c", type="closed", at=8_000),
    ]
    state, outputs = _feed(None, [opp, *events])
    assert outputs == []
    assert isinstance(state, Open)
    assert state.opportunity == opp
    assert {e.event_id for e in state.winners()} == {"l", "i", "c"}

    due = due_at_ms(state, POLICY)
    assert due == opp.ts_ms + 8_000 + opp.grace_ms + POLICY.allowed_lateness_ms
    now = due + 123
    state, (closed,) = on_tick(state, now, POLICY)

    assert closed == close_opportunity(opp, events)
    assert isinstance(closed, ClosedOpportunity)
    assert closed.archive.close_reason == "closed_event"
    assert state == Archived(
        opportunity_key=opp.opportunity_key,
        archived_at_ms=now,
        app_id=opp.app_id,
        seen={(e.app_id, e.event_id): e.content_digest() for e in events},
    )


def test_events_before_their_opportunity_are_kept_and_closed_with_it(make_opportunity, make_event):
    opp = make_opportunity()
    event = make_event(event_id="l", type="loaded", at=1_000)
    state, outputs = _feed(None, [event, opp])
    assert outputs == []
    _, (closed,) = drain(state, POLICY)
    assert closed == close_opportunity(opp, [event])


def test_on_tick_before_due_does_nothing(make_opportunity, make_event):
    opp = make_opportunity()
    state, _ = _feed(None, [opp, make_event(event_id="l", at=1_000)])
    due = due_at_ms(state, POLICY)
    assert due == opp.ts_ms + opp.closure_window_ms + POLICY.allowed_lateness_ms
    assert on_tick(state, due - 1, POLICY) == (state, ())
    assert on_tick(state, 0, POLICY) == (state, ())
    new_state, outputs = on_tick(state, due, POLICY)
    assert isinstance(new_state, Archived)
    assert len(outputs) == 1


def test_on_tick_without_state_does_nothing():
    assert on_tick(None, 10**13, POLICY) == (None, ())
    assert due_at_ms(None, POLICY) is None


def test_a_closed_event_brings_the_due_time_forward(make_opportunity, make_event):
    opp = make_opportunity()
    state, _ = _feed(None, [opp])
    before = due_at_ms(state, POLICY)
    state, _ = on_event(state, make_event(event_id="c", type="closed", at=1_000), 0, POLICY)
    after = due_at_ms(state, POLICY)
    assert after == opp.ts_ms + 1_000 + opp.grace_ms + POLICY.allowed_lateness_ms
    assert after < before


def test_drain_closes_immediately(make_opportunity, make_event):
    opp = make_opportunity()
    event = make_event(event_id="l", at=1_000)
    state, _ = _feed(None, [opp, event])
    due = due_at_ms(state, POLICY)
    new_state, (closed,) = drain(state, POLICY)
    assert closed == close_opportunity(opp, [event])
    assert isinstance(new_state, Archived)
    assert new_state.archived_at_ms == due


def test_drain_without_state_does_nothing():
    assert drain(None, POLICY) == (None, ())


def test_redelivered_opportunity_is_ignored(make_opportunity, make_event):
    opp = make_opportunity()
    state, _ = _feed(None, [opp, make_event(event_id="l", at=1_000)])
    again = dataclasses.replace(opp, delivery_id="del_2")
    assert on_opportunity(state, again, 0, POLICY) == (state, ())
    archived, _ = drain(state, POLICY)
    assert on_opportunity(archived, opp, 0, POLICY) == (archived, ())


# --- after the archive ---------------------------------------------------------------------


def test_new_event_after_archive_is_a_late_event(make_opportunity, make_event):
    _, _, archived, _ = _closed_archive(make_opportunity, make_event)
    late = make_event(event_id="r", type="reward", at=99_000_000)
    state, outputs = on_event(archived, late, 0, POLICY)
    assert outputs == (LateEvent(StoredEvent(late, late=True)),)
    assert isinstance(state, Archived)
    assert state.seen[(late.app_id, "r")] == late.content_digest()
    assert state.archived_at_ms == archived.archived_at_ms


def test_identical_resends_after_archive_are_absorbed(make_opportunity, make_event):
    _, events, archived, _ = _closed_archive(make_opportunity, make_event)
    for event in events:
        assert on_event(archived, _resend(event, delay_ms=3_600_000), 0, POLICY) == (archived, ())
    late = make_event(event_id="r", type="reward", at=99_000_000)
    state, _ = on_event(archived, late, 0, POLICY)
    assert on_event(state, _resend(late), 0, POLICY) == (state, ())


def test_conflicting_copy_after_archive_is_dead_lettered(make_opportunity, make_event):
    _, events, archived, _ = _closed_archive(make_opportunity, make_event)
    conflicting = dataclasses.replace(events[0], type="load_failed")
    state, (dead,) = on_event(archived, conflicting, 0, POLICY)
    assert state == archived
    assert isinstance(dead, DeadLetter)
    assert dead.reason == DUPLICATE_CONFLICT
    assert dead.opportunity_key == conflicting.opportunity_key
    assert dead.payload["event_id"] == "l"
    assert dead.payload["type"] == "load_failed"


def test_event_of_another_app_after_archive_is_dead_lettered(make_opportunity, make_event):
    _, _, archived, _ = _closed_archive(make_opportunity, make_event)
    foreign = make_event(event_id="x", app_id="app_2", at=3_000)
    state, (dead,) = on_event(archived, foreign, 0, POLICY)
    assert state == archived
    assert dead.reason == OPPORTUNITY_APP_MISMATCH
    assert dead.payload["app_id"] == "app_2"


def test_tombstone_is_forgotten_after_tombstone_ttl(make_opportunity, make_event):
    _, _, archived, _ = _closed_archive(make_opportunity, make_event)
    forget_at = archived.archived_at_ms + POLICY.tombstone_ttl_ms
    assert due_at_ms(archived, POLICY) == forget_at
    assert on_tick(archived, forget_at - 1, POLICY) == (archived, ())
    assert on_tick(archived, forget_at, POLICY) == (None, ())


# --- duplicates and conflicts while open ---------------------------------------------------


def test_conflicting_copy_is_dead_lettered_and_earliest_received_copy_stays(
    make_opportunity, make_event
):
    opp = make_opportunity()
    first = make_event(event_id="e", type="impression", at=1_000, revenue_micros=10, currency="USD")
    second = dataclasses.replace(
        first, revenue_micros=10_000, received_at_ms=first.received_at_ms + 1_000
    )
    for order in ([first, second], [second, first]):
        state, outputs = _feed(None, [opp, *order])
        assert outputs == []  # conflicts are settled at close, whatever the order
        assert state.winners() == (first,)
        _, (dead, closed) = drain(state, POLICY)
        assert dead.reason == DUPLICATE_CONFLICT
        assert dead.payload["revenue_micros"] == 10_000
        assert dead.payload["received_at_ms"] == second.received_at_ms
        assert closed.archive.revenue_micros == 10


def test_conflicting_copy_before_the_opportunity_is_dead_lettered_too(make_event):
    first = make_event(event_id="e", type="loaded", at=1_000)
    second = dataclasses.replace(first, source_id="net_b", received_at_ms=first.received_at_ms + 1)
    state, outputs = _feed(None, [second, first])
    assert outputs == []
    assert state.winners() == (first,)
    _, (dead, orphans) = drain(state, POLICY)
    assert dead.reason == DUPLICATE_CONFLICT
    assert dead.payload["source_id"] == "net_b"
    assert [s.event for s in orphans.events] == [first]


def test_identical_resend_while_open_is_absorbed_and_earliest_copy_kept(
    make_opportunity, make_event
):
    opp = make_opportunity()
    first = make_event(event_id="e", at=1_000)
    resend = _resend(first)
    for order in ([first, resend], [resend, first]):
        state, outputs = _feed(None, [opp, *order])
        assert outputs == []
        assert state.winners() == (first,)


def test_resend_with_other_attrs_order_is_the_same_event(make_opportunity, make_event):
    opp = make_opportunity()
    first = make_event(event_id="e", attrs={"a": 1, "b": "x"})
    resend = dataclasses.replace(_resend(first), attrs={"b": "x", "a": 1})
    state, outputs = _feed(None, [opp, first, resend])
    assert outputs == []
    assert state.winners() == (first,)


# --- app ownership -------------------------------------------------------------------------


def test_event_of_another_app_is_dead_lettered_opportunity_app_mismatch(
    make_opportunity, make_event
):
    opp = make_opportunity()
    own = make_event(event_id="own", at=1_000)
    foreign = make_event(event_id="foreign", app_id="app_2", at=1_500)
    for order in ([opp, own, foreign], [own, foreign, opp], [foreign, opp, own]):
        state, outputs = _feed(None, order)
        (dead,) = outputs
        assert isinstance(dead, DeadLetter)
        assert dead.reason == OPPORTUNITY_APP_MISMATCH
        assert dead.opportunity_key == opp.opportunity_key
        assert dead.payload["event_id"] == "foreign"
        assert dead.payload["app_id"] == "app_2"
        assert {e.event_id for e in state.winners()} == {"own"}
        _, (closed,) = drain(state, POLICY)
        assert [s.event.event_id for s in closed.events] == ["own"]


@pytest.mark.parametrize(
    "order", ["opp,foreign,own", "foreign,own,opp", "own,foreign,opp", "foreign,opp,own"]
)
def test_foreign_app_copy_with_same_event_id_does_not_hide_the_owners_event(
    make_opportunity, make_event, order
):
    # event_id is unique per app only: another app's event with the same id (and
    # the same client fields, received 1 ms earlier) must not stand in for the
    # owner's event. With the opportunity first this holds; arrival order must
    # not change it.
    opp = make_opportunity()
    foreign = make_event(event_id="1", app_id="app_2", type="impression", at=1_000)
    own = dataclasses.replace(foreign, app_id=opp.app_id, received_at_ms=foreign.received_at_ms + 1)
    items = {"opp": opp, "foreign": foreign, "own": own}
    state, outputs = _feed(None, [items[name] for name in order.split(",")])
    assert [(o.reason, o.payload["app_id"]) for o in outputs] == [
        (OPPORTUNITY_APP_MISMATCH, "app_2")
    ]
    _, (closed,) = drain(state, POLICY)
    assert [(s.event.event_id, s.event.app_id) for s in closed.events] == [("1", "app_1")]
    assert closed == close_opportunity(opp, [own])


@pytest.mark.parametrize("order", ["x,y,x_resend", "y,x,x_resend", "x_resend,y,x"])
def test_dead_letters_do_not_depend_on_copy_arrival_order(make_opportunity, make_event, order):
    # Copy x (received first), a conflicting copy y, and x_resend (an identical
    # resend of x received last). x wins in every order, so only y conflicts.
    opp = make_opportunity()
    x = make_event(event_id="e", type="loaded", at=1_000)
    y = dataclasses.replace(x, source_id="net_b", received_at_ms=x.received_at_ms + 1_000)
    x_resend = dataclasses.replace(x, received_at_ms=x.received_at_ms + 2_000)
    items = {"x": x, "y": y, "x_resend": x_resend}
    state, outputs = _feed(None, [opp, *(items[name] for name in order.split(","))])
    assert outputs == []
    assert state.winners() == (x,)
    _, drained = drain(state, POLICY)
    letters = [o for o in drained if isinstance(o, DeadLetter)]
    assert [(o.reason, o.payload["source_id"], o.payload["received_at_ms"]) for o in letters] == [
        (DUPLICATE_CONFLICT, "net_b", y.received_at_ms)
    ]


# --- orphans -------------------------------------------------------------------------------


def test_events_without_an_opportunity_become_orphans_when_due(make_event):
    late_one = make_event(event_id="b", type="impression", at=3_000)
    early_one = make_event(event_id="a", type="loaded", at=1_000)
    state, outputs = _feed(None, [late_one, early_one])
    assert outputs == []
    assert isinstance(state, Open)
    assert state.opportunity is None

    key_time = ulid_time_ms(late_one.opportunity_key)
    due = key_time + POLICY.default_closure_window_ms + POLICY.allowed_lateness_ms
    assert due_at_ms(state, POLICY) == due
    assert on_tick(state, due - 1, POLICY) == (state, ())

    new_state, (orphans,) = on_tick(state, due, POLICY)
    assert new_state is None
    assert orphans == OrphanEvents(
        late_one.opportunity_key,
        (
            StoredEvent(early_one, excluded_reason=EXCLUDED_UNKNOWN_OPPORTUNITY),
            StoredEvent(late_one, excluded_reason=EXCLUDED_UNKNOWN_OPPORTUNITY),
        ),
    )
    assert all(orphan.excluded_reason == "unknown_opportunity" for orphan in orphans.events)
    assert not any(orphan.late for orphan in orphans.events)


def test_orphan_due_time_comes_from_the_key_not_from_event_times(make_event):
    event = make_event(event_id="a", at=10**9)  # wildly wrong client clock
    state, _ = on_event(None, event, 0, POLICY)
    assert due_at_ms(state, POLICY) == (
        ulid_time_ms(event.opportunity_key)
        + POLICY.default_closure_window_ms
        + POLICY.allowed_lateness_ms
    )


def test_drain_turns_events_without_opportunity_into_orphans(make_event):
    event = make_event(event_id="a")
    state, _ = on_event(None, event, 0, POLICY)
    new_state, (orphans,) = drain(state, POLICY)
    assert new_state is None
    assert isinstance(orphans, OrphanEvents)
    assert [s.event for s in orphans.events] == [event]


def test_events_beyond_the_per_opportunity_cap_are_dead_lettered(make_opportunity, make_event):
    from mediation.rules.state import TOO_MANY_EVENTS

    policy = dataclasses.replace(POLICY, max_events_per_opportunity=3)
    opp = make_opportunity()
    state, _ = on_opportunity(None, opp, 0, policy)
    refused = []
    for i in range(5):
        state, outputs = on_event(state, make_event(event_id=f"e{i}", at=1_000 + i), 0, policy)
        refused.extend(outputs)
    assert [o.reason for o in refused] == [TOO_MANY_EVENTS, TOO_MANY_EVENTS]
    assert len(state.winners()) == 3


def test_tombstones_from_older_snapshots_still_absorb_resends(make_opportunity, make_event):
    # Snapshots taken before content digests keep client_fields tuples.
    _, _, archived, _ = _closed_archive(make_opportunity, make_event)
    assert isinstance(archived, Archived)
    event = make_event(event_id="r", type="reward", at=99_000_000)
    old_style = dataclasses.replace(archived, seen={(event.app_id, "r"): event.client_fields()})
    state, outputs = on_event(old_style, event, 0, POLICY)
    assert outputs == () and state is old_style
    other = dataclasses.replace(event, type="click")
    _state, (letter,) = on_event(old_style, other, 0, POLICY)
    assert letter.reason == DUPLICATE_CONFLICT  # type: ignore[union-attr]


def test_snapshots_of_the_earlier_dict_layout_are_flattened(make_opportunity, make_event):
    """Recovery stores written before ``Open.events`` was a flat tuple still resume."""
    opportunity = make_opportunity()
    first = make_event(event_id="e1")
    other_content = dataclasses.replace(first, revenue_micros=7)
    second = make_event(event_id="e2")
    legacy = Open(
        opportunity.opportunity_key,
        opportunity,
        {("app_1", "e1"): (first, other_content), ("app_1", "e2"): (second,)},  # type: ignore[arg-type]
    )
    restored = from_snapshot(legacy)
    assert restored == Open(
        opportunity.opportunity_key, opportunity, (first, other_content, second)
    )
    assert from_snapshot(restored) is restored


# --- held orphans: events whose opportunity has not arrived ---------------------------------


def test_an_app_holding_its_limit_of_orphan_keys_gets_a_dead_letter_for_a_new_key(make_event):
    from mediation.rules.state import TOO_MANY_ORPHANS

    policy = dataclasses.replace(POLICY, max_orphan_keys_per_app=2)
    event = make_event(event_id="e", type="loaded", at=1_000)
    held, out = on_event(None, event, 0, policy, held_orphan_keys=1)
    assert isinstance(held, Open) and held.opportunity is None and out == ()
    refused, (letter,) = on_event(None, event, 0, policy, held_orphan_keys=2)
    assert refused is None
    assert isinstance(letter, DeadLetter) and letter.reason == TOO_MANY_ORPHANS
    assert "2" in letter.detail and event.app_id in letter.detail


def test_the_orphan_limit_never_refuses_events_of_a_key_already_held_or_opened(
    make_opportunity, make_event
):
    policy = dataclasses.replace(POLICY, max_orphan_keys_per_app=1)
    first = make_event(event_id="a", type="loaded", at=1_000)
    second = make_event(event_id="b", type="impression", at=2_000)
    held, _ = on_event(None, first, 0, policy, held_orphan_keys=0)
    held, out = on_event(held, second, 0, policy, held_orphan_keys=1)
    assert isinstance(held, Open) and len(held.events) == 2 and out == ()
    opened, _ = on_opportunity(None, make_opportunity(), 0, policy)
    opened, out = on_event(opened, first, 0, policy, held_orphan_keys=5)
    assert isinstance(opened, Open) and opened.events == (first,) and out == ()


def test_events_from_snapshots_older_than_their_source_fields_resume_without_them(make_event):
    new = make_event(event_id="e", type="loaded", at=1_000)
    # What unpickling a snapshot of before them leaves: the state a frozen
    # slotted dataclass pickles is its field values in order, then without these.
    old = Event.__new__(Event)
    old.__setstate__([getattr(new, f.name) for f in dataclasses.fields(Event)][:-3])
    assert not hasattr(old, "source_partition") and not hasattr(old, "source_bytes")
    resumed = from_snapshot(Open(old.opportunity_key, None, (old,)))
    assert isinstance(resumed, Open)
    (event,) = resumed.events
    assert (event.source_partition, event.source_offset, event.source_bytes) == (None,) * 3
    assert dataclasses.replace(event, ts_ms=5).ts_ms == 5
