"""Properties of the closure rules and the state machine (hypothesis).

The dataflow feeds items one by one through the state machine; replay calls
``close_opportunity`` on the stored set. Both must agree, whatever the
arrival order, the duplicates, or where the opportunity lands among its events.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mediation.rules import (
    ClosedOpportunity,
    Event,
    LateEvent,
    Opportunity,
    Policy,
    close_opportunity,
    drain,
    due_at_ms,
    on_event,
    on_opportunity,
    on_tick,
)
from mediation.rules.model import CLOSE_REASONS, EVENT_TYPES, OUTCOMES, WaterfallEntry
from mediation.rules.state import OPPORTUNITY_APP_MISMATCH
from mediation.rules.ulid import encode_ulid

PROPERTY = settings(max_examples=200, deadline=None)
POLICY = Policy()

# Opportunity times: 2023-11-14 .. 2023-12-14.
TS_LO = 1_700_000_000_000
TS_HI = TS_LO + 30 * 86_400_000
SOURCES = ("net_a", "net_b", "net_c")
EVENT_IDS = (*(f"e{i:02d}" for i in range(16)), "A", "Z", "_")


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fields of one opportunity and of 0..12 distinct events about it."""
    ts = draw(st.integers(TS_LO, TS_HI))
    sources = draw(st.lists(st.sampled_from(SOURCES), min_size=0, max_size=3, unique=True))
    window = draw(st.sampled_from([60_000, 120_000, 1_800_000]))
    grace = draw(st.sampled_from([1_000, 5_000, 30_000]))
    skew = draw(st.sampled_from([0, 10_000, 300_000]))
    opportunity = {
        "opportunity_key": encode_ulid(ts, draw(st.binary(min_size=10, max_size=10))),
        "ts_ms": ts,
        "status": "fill" if sources else "no_fill",
        "waterfall": tuple(
            WaterfallEntry(s, draw(st.integers(0, 5_000_000)), 1_500) for s in sources
        ),
        "closure_window_ms": window,
        "grace_ms": grace,
        "skew_tolerance_ms": skew,
        "config_version": draw(st.integers(1, 5)),
    }
    # Whole seconds make equal server_ts (ties broken by event_id) and exact
    # window boundaries common; fine-grained offsets cover everything else.
    offset = st.one_of(
        st.integers(-window // 1_000, window // 1_000).map(lambda s: s * 1_000),
        st.integers(-window, window),
    )
    ids = draw(st.lists(st.sampled_from(EVENT_IDS), max_size=12, unique=True))
    events = []
    for event_id in ids:
        server_ts = ts + draw(offset)
        revenue = draw(st.one_of(st.none(), st.integers(0, 5_000_000)))
        events.append(
            {
                "event_id": event_id,
                "opportunity_key": opportunity["opportunity_key"],
                "type": draw(st.sampled_from(EVENT_TYPES)),
                "source_id": draw(st.sampled_from((*sources, None))),
                "server_ts_ms": server_ts,
                "ts_ms": server_ts - draw(st.integers(-120_000, 120_000)),
                "received_at_ms": server_ts + draw(st.integers(0, 10_000)),
                "revenue_micros": revenue,
                "currency": None if revenue is None else draw(st.sampled_from(["USD", "EUR"])),
                "attrs": draw(
                    st.dictionaries(
                        st.sampled_from(["a", "b"]), st.integers(-3, 3) | st.text(max_size=3)
                    )
                ),
            }
        )
    return opportunity, events


def _build(make_opportunity, make_event, scenario) -> tuple[Opportunity, list[Event]]:
    opportunity_fields, event_fields = scenario
    opportunity = make_opportunity(**opportunity_fields)
    return opportunity, [make_event(**fields) for fields in event_fields]


def _run(items: list[Opportunity | Event]) -> tuple[ClosedOpportunity, list[object]]:
    """Feed the items in order, then drain; the closing record and other outputs."""
    state = None
    outputs: list[object] = []
    for item in items:
        if isinstance(item, Opportunity):
            state, out = on_opportunity(state, item, 0, POLICY)
        else:
            state, out = on_event(state, item, 0, POLICY)
        outputs.extend(out)
    state, out = drain(state, POLICY)
    closed = [o for o in out if isinstance(o, ClosedOpportunity)]
    assert len(closed) == 1
    return closed[0], outputs + [o for o in out if not isinstance(o, ClosedOpportunity)]


def _stored_set(closed: ClosedOpportunity) -> set[tuple[str, tuple[object, ...], int, str | None]]:
    return {
        (s.event.event_id, s.event.client_fields(), s.event.received_at_ms, s.excluded_reason)
        for s in closed.events
    }


@PROPERTY
@given(scenario=scenarios(), data=st.data())
def test_any_arrival_order_gives_the_same_closing_record(
    make_opportunity, make_event, scenario, data
):
    opportunity, events = _build(make_opportunity, make_event, scenario)
    reference, reference_outputs = _run([opportunity, *events])
    shuffled = data.draw(st.permutations([opportunity, *events]), label="arrival order")
    closed, outputs = _run(shuffled)

    assert closed.archive == reference.archive
    assert _stored_set(closed) == _stored_set(reference)
    assert closed == reference
    assert outputs == reference_outputs == []


@PROPERTY
@given(scenario=scenarios(), data=st.data())
def test_resent_duplicates_never_change_the_closing_record(
    make_opportunity, make_event, scenario, data
):
    opportunity, events = _build(make_opportunity, make_event, scenario)
    reference, _ = _run([opportunity, *events])

    resends = []
    for event in events:
        for _ in range(data.draw(st.integers(0, 2), label=f"resends of {event.event_id}")):
            resends.append(
                dataclasses.replace(
                    event,
                    received_at_ms=event.received_at_ms + data.draw(st.integers(1, 600_000)),
                    server_ts_ms=event.server_ts_ms + data.draw(st.integers(-2_000, 2_000)),
                )
            )
    shuffled = data.draw(st.permutations([opportunity, *events, *resends]), label="order")
    closed, outputs = _run(shuffled)

    assert outputs == []  # resends are absorbed, never dead-lettered
    assert closed.archive == reference.archive
    assert _stored_set(closed) == _stored_set(reference)
    assert closed == reference


@PROPERTY
@given(scenario=scenarios(), data=st.data())
def test_events_of_another_app_are_dead_lettered_in_any_order(
    make_opportunity, make_event, scenario, data
):
    opportunity, events = _build(make_opportunity, make_event, scenario)
    reference, _ = _run([opportunity, *events])
    # Another app's events (ids that the owner does not use) for the same key.
    foreign = [
        dataclasses.replace(event, app_id="app_2", event_id=f"foreign_{event.event_id}")
        for event in data.draw(
            st.lists(st.sampled_from(events), max_size=3, unique_by=lambda e: e.event_id)
            if events
            else st.just([])
        )
    ]
    shuffled = data.draw(st.permutations([opportunity, *events, *foreign]), label="order")
    closed, outputs = _run(shuffled)

    assert closed == reference
    assert sorted((o.reason, o.payload["event_id"]) for o in outputs) == sorted(
        (OPPORTUNITY_APP_MISMATCH, e.event_id) for e in foreign
    )


@PROPERTY
@given(scenario=scenarios(), data=st.data())
def test_opportunity_arriving_before_or_after_its_events_is_irrelevant(
    make_opportunity, make_event, scenario, data
):
    opportunity, events = _build(make_opportunity, make_event, scenario)
    first, _ = _run([opportunity, *events])
    last, _ = _run([*events, opportunity])
    position = data.draw(st.integers(0, len(events)), label="opportunity position")
    middle, _ = _run([*events[:position], opportunity, *events[position:]])

    assert first.archive == last.archive == middle.archive
    assert first == last == middle


@PROPERTY
@given(scenario=scenarios(), data=st.data())
def test_replay_of_the_stored_events_equals_the_dataflow_result(
    make_opportunity, make_event, scenario, data
):
    opportunity, events = _build(make_opportunity, make_event, scenario)
    shuffled = data.draw(st.permutations([opportunity, *events]), label="arrival order")
    streamed, _ = _run(shuffled)

    replayed = close_opportunity(opportunity, events)
    assert replayed == streamed
    # Replay from what was stored: the surviving copies, in any order.
    stored_events = [s.event for s in streamed.events]
    assert close_opportunity(opportunity, list(reversed(stored_events))) == streamed


@PROPERTY
@given(scenario=scenarios(), data=st.data())
def test_state_machine_closes_exactly_once_at_its_due_time(
    make_opportunity, make_event, scenario, data
):
    opportunity, events = _build(make_opportunity, make_event, scenario)
    state = None
    for item in [opportunity, *events]:
        state, out = (
            on_opportunity(state, item, 0, POLICY)
            if isinstance(item, Opportunity)
            else on_event(state, item, 0, POLICY)
        )
        assert out == ()
    due = due_at_ms(state, POLICY)
    assert due is not None
    early = data.draw(st.integers(0, due - 1), label="early tick")
    assert on_tick(state, early, POLICY) == (state, ())

    now = due + data.draw(st.integers(0, 60_000), label="tick after due")
    archived, (closed,) = on_tick(state, now, POLICY)
    assert closed == close_opportunity(opportunity, events)
    assert on_tick(archived, now, POLICY) == (archived, ())
    for event in events:  # identical copies after the archive are absorbed
        resend = dataclasses.replace(event, received_at_ms=now + 1, server_ts_ms=now)
        assert on_event(archived, resend, now, POLICY) == (archived, ())
    late = dataclasses.replace(
        events[0] if events else make_event(opportunity_key=opportunity.opportunity_key),
        event_id="late_one",
    )
    _, outputs = on_event(archived, late, now, POLICY)
    assert len(outputs) == 1
    assert isinstance(outputs[0], LateEvent)
    assert outputs[0].stored.late


@PROPERTY
@given(scenario=scenarios())
def test_closing_record_invariants(make_opportunity, make_event, scenario):
    opportunity, events = _build(make_opportunity, make_event, scenario)
    closed = close_opportunity(opportunity, events)
    archive = closed.archive
    counted = [s.event for s in closed.events if s.excluded_reason is None]

    assert len(closed.events) == len(events)
    assert archive.counted_events == len(counted)
    assert archive.counted_events + archive.excluded_events == len(events)
    assert sum(archive.counts.values()) == archive.counted_events
    assert all(n > 0 for n in archive.counts.values())
    assert archive.close_reason in CLOSE_REASONS
    assert archive.outcome in OUTCOMES
    assert archive.closed_at_ms <= opportunity.ts_ms + opportunity.closure_window_ms
    window_start = opportunity.ts_ms - opportunity.skew_tolerance_ms
    assert all(window_start <= e.server_ts_ms <= archive.closed_at_ms for e in counted)
    assert archive.revenue_micros == sum(
        e.revenue_micros or 0 for e in counted if e.type == "impression"
    )
    assert archive.rewarded == any(e.type == "reward" for e in counted)
    sources = {e.source_id for e in counted if e.type in ("impression", "loaded")}
    assert archive.credited_source_id is None or archive.credited_source_id in sources
