from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediation.rules import RULE_VERSION, Policy, close_at_ms, close_opportunity, inputs_hash
from mediation.rules.closure import (
    EXCLUDED_CLICK_WITHOUT_IMPRESSION,
    EXCLUDED_OUT_OF_WINDOW,
    event_order,
)
from mediation.rules.state import drain, on_event, on_opportunity

POLICY = Policy()


def _excluded(closed, event_id: str) -> str | None:
    (stored,) = [s for s in closed.events if s.event.event_id == event_id]
    return stored.excluded_reason


# --- dedup ---------------------------------------------------------------------------------


def test_duplicate_event_counts_once(make_opportunity, make_event):
    opp = make_opportunity()
    first = make_event(
        event_id="imp", type="impression", at=2_000, revenue_micros=10, currency="USD"
    )
    resend = dataclasses.replace(
        first, server_ts_ms=first.server_ts_ms + 7, received_at_ms=first.received_at_ms + 5_000
    )
    state, out = on_opportunity(None, opp, 0, POLICY)
    for copy in (first, resend, resend):
        state, out = on_event(state, copy, 0, POLICY)
        assert out == ()
    _, (closed,) = drain(state, POLICY)

    assert closed.archive.counts == {"impression": 1}
    assert closed.archive.counted_events == 1
    assert closed.archive.revenue_micros == 10
    assert [s.event for s in closed.events] == [first]


# --- window and close time -----------------------------------------------------------------


def test_window_expired_when_no_terminal_event(make_opportunity, make_event):
    opp = make_opportunity()
    events = [make_event(event_id="l", type="loaded", at=1_000)]
    closed = close_opportunity(opp, events)
    assert closed.archive.close_reason == "window_expired"
    assert closed.archive.closed_at_ms == opp.ts_ms + opp.closure_window_ms
    assert close_at_ms(opp, events) == (opp.ts_ms + opp.closure_window_ms, "window_expired")


def test_window_expired_without_any_event(make_opportunity):
    opp = make_opportunity()
    closed = close_opportunity(opp, [])
    assert closed.archive.close_reason == "window_expired"
    assert closed.archive.closed_at_ms == opp.ts_ms + opp.closure_window_ms
    assert closed.archive.outcome == "no_fill"
    assert closed.events == ()


def test_closed_event_closes_after_grace(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(event_id="imp", type="impression", at=1_000),
        make_event(event_id="c1", type="closed", at=9_000),
        make_event(event_id="c2", type="closed", at=4_000),  # the earliest one decides
    ]
    closed = close_opportunity(opp, events)
    assert closed.archive.close_reason == "closed_event"
    assert closed.archive.closed_at_ms == opp.ts_ms + 4_000 + opp.grace_ms


def test_closed_event_whose_grace_reaches_the_window_end_is_window_expired(
    make_opportunity, make_event
):
    opp = make_opportunity()
    at = opp.closure_window_ms - opp.grace_ms + 1
    closed = close_opportunity(opp, [make_event(event_id="c", type="closed", at=at)])
    assert closed.archive.close_reason == "window_expired"
    assert closed.archive.closed_at_ms == opp.ts_ms + opp.closure_window_ms


def test_all_sources_failed_closes_early(make_opportunity, make_event):
    opp = make_opportunity()  # net_a, net_b
    events = [
        make_event(event_id="fa", type="load_failed", source_id="net_a", at=1_000),
        make_event(event_id="fb", type="load_failed", source_id="net_b", at=3_000),
        make_event(event_id="fa2", type="load_failed", source_id="net_a", at=5_000),
    ]
    closed = close_opportunity(opp, events)
    assert closed.archive.close_reason == "all_sources_failed"
    # The last source to fail (first failure of each source) plus the grace.
    assert closed.archive.closed_at_ms == opp.ts_ms + 3_000 + opp.grace_ms
    assert closed.archive.outcome == "load_failed"


def test_one_failed_source_of_two_does_not_close_early(make_opportunity, make_event):
    opp = make_opportunity()
    events = [make_event(event_id="fa", type="load_failed", source_id="net_a", at=1_000)]
    assert close_at_ms(opp, events) == (opp.ts_ms + opp.closure_window_ms, "window_expired")


def test_load_failed_of_source_outside_waterfall_does_not_close_early(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(event_id="fa", type="load_failed", source_id="net_a", at=1_000),
        make_event(event_id="fz", type="load_failed", source_id="net_zzz", at=1_500),
        make_event(event_id="fn", type="load_failed", source_id=None, at=1_600),
    ]
    assert close_at_ms(opp, events)[1] == "window_expired"


def test_earlier_of_closed_event_and_all_sources_failed_wins(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(event_id="fa", type="load_failed", source_id="net_a", at=1_000),
        make_event(event_id="fb", type="load_failed", source_id="net_b", at=2_000),
        make_event(event_id="c", type="closed", at=6_000),
    ]
    assert close_at_ms(opp, events) == (opp.ts_ms + 2_000 + opp.grace_ms, "all_sources_failed")
    later_failure = [*events[:1], dataclasses.replace(events[1], server_ts_ms=opp.ts_ms + 9_000)]
    assert close_at_ms(opp, [*later_failure, events[2]]) == (
        opp.ts_ms + 6_000 + opp.grace_ms,
        "closed_event",
    )


def test_no_fill_closes_after_grace(make_opportunity, make_event):
    opp = make_opportunity(status="no_fill", waterfall=())
    closed = close_opportunity(opp, [make_event(event_id="e", type="error", at=500)])
    assert closed.archive.closed_at_ms == opp.ts_ms + opp.grace_ms
    assert closed.archive.close_reason == "all_sources_failed"
    assert closed.archive.outcome == "no_fill"
    assert closed.archive.credited_source_id is None


def test_no_fill_with_grace_longer_than_window_closes_at_window_end(make_opportunity):
    opp = make_opportunity(status="no_fill", waterfall=(), grace_ms=10_000, closure_window_ms=5_000)
    assert close_at_ms(opp, [])[0] == opp.ts_ms + 5_000


def test_terminal_events_before_the_window_do_not_move_the_close_time(make_opportunity, make_event):
    opp = make_opportunity()
    too_early = -opp.skew_tolerance_ms - 1
    events = [
        make_event(event_id="c", type="closed", at=too_early),
        make_event(event_id="fa", type="load_failed", source_id="net_a", at=too_early),
        make_event(event_id="fb", type="load_failed", source_id="net_b", at=too_early),
    ]
    assert close_at_ms(opp, events) == (opp.ts_ms + opp.closure_window_ms, "window_expired")


def test_events_outside_window_are_excluded_out_of_window(make_opportunity, make_event):
    opp = make_opportunity()
    skew, window = opp.skew_tolerance_ms, opp.closure_window_ms
    events = [
        make_event(event_id="too_early", type="loaded", at=-skew - 1),
        make_event(event_id="first_ok", type="loaded", at=-skew),
        make_event(event_id="last_ok", type="error", at=window),
        make_event(event_id="too_late", type="impression", at=window + 1, revenue_micros=99),
    ]
    closed = close_opportunity(opp, events)
    assert _excluded(closed, "too_early") == EXCLUDED_OUT_OF_WINDOW
    assert _excluded(closed, "too_late") == EXCLUDED_OUT_OF_WINDOW
    assert _excluded(closed, "first_ok") is None
    assert _excluded(closed, "last_ok") is None
    assert closed.archive.counted_events == 2
    assert closed.archive.excluded_events == 2
    assert closed.archive.counts == {"loaded": 1, "error": 1}
    assert closed.archive.revenue_micros == 0
    assert closed.archive.outcome == "loaded"


def test_events_after_an_early_close_are_out_of_window(make_opportunity, make_event):
    opp = make_opportunity()
    close_at = 4_000 + opp.grace_ms
    events = [
        make_event(event_id="c", type="closed", at=4_000),
        make_event(event_id="at_close", type="reward", at=close_at),
        make_event(event_id="after", type="reward", at=close_at + 1),
    ]
    closed = close_opportunity(opp, events)
    assert _excluded(closed, "at_close") is None
    assert _excluded(closed, "after") == EXCLUDED_OUT_OF_WINDOW


# --- clicks and attribution ----------------------------------------------------------------


def test_click_without_prior_impression_of_same_source_does_not_count(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(event_id="k0", type="click", source_id="net_a", at=1_000),  # before impression
        make_event(event_id="imp", type="impression", source_id="net_a", at=2_000),
        make_event(event_id="k1", type="click", source_id="net_b", at=3_000),  # other source
    ]
    closed = close_opportunity(opp, events)
    assert _excluded(closed, "k0") == EXCLUDED_CLICK_WITHOUT_IMPRESSION
    assert _excluded(closed, "k1") == EXCLUDED_CLICK_WITHOUT_IMPRESSION
    assert closed.archive.outcome == "impressed"
    assert "click" not in closed.archive.counts
    assert closed.archive.excluded_events == 2


def test_click_after_impression_of_same_source_counts(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(event_id="imp", type="impression", source_id="net_b", at=2_000),
        make_event(event_id="k", type="click", source_id="net_b", at=3_000),
    ]
    closed = close_opportunity(opp, events)
    assert _excluded(closed, "k") is None
    assert closed.archive.outcome == "clicked"
    assert closed.archive.counts == {"impression": 1, "click": 1}


def test_click_after_out_of_window_impression_does_not_count(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(event_id="imp", type="impression", at=-opp.skew_tolerance_ms - 10),
        make_event(event_id="k", type="click", at=1_000),
    ]
    closed = close_opportunity(opp, events)
    assert _excluded(closed, "k") == EXCLUDED_CLICK_WITHOUT_IMPRESSION


def test_click_at_same_server_ts_as_impression_follows_event_id_order(make_opportunity, make_event):
    opp = make_opportunity()
    imp = make_event(event_id="b_imp", type="impression", at=2_000)
    click_before = make_event(event_id="a_click", type="click", at=2_000)
    click_after = make_event(event_id="c_click", type="click", at=2_000)
    closed = close_opportunity(opp, [click_after, imp, click_before])
    assert [s.event.event_id for s in closed.events] == ["a_click", "b_imp", "c_click"]
    assert _excluded(closed, "a_click") == EXCLUDED_CLICK_WITHOUT_IMPRESSION
    assert _excluded(closed, "c_click") is None


def test_credited_source_is_first_impression_else_first_loaded(make_opportunity, make_event):
    opp = make_opportunity()
    loaded_b = make_event(event_id="lb", type="loaded", source_id="net_b", at=500)
    loaded_a = make_event(event_id="la", type="loaded", source_id="net_a", at=800)
    imp_a = make_event(event_id="ia", type="impression", source_id="net_a", at=2_000)
    imp_b = make_event(event_id="ib", type="impression", source_id="net_b", at=3_000)

    assert close_opportunity(opp, [imp_b, imp_a, loaded_b]).archive.credited_source_id == "net_a"
    assert close_opportunity(opp, [loaded_a, loaded_b]).archive.credited_source_id == "net_b"
    assert close_opportunity(opp, [loaded_b, imp_b]).archive.credited_source_id == "net_b"
    assert close_opportunity(opp, []).archive.credited_source_id is None


def test_out_of_window_impression_is_not_credited(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(
            event_id="ib", type="impression", source_id="net_b", at=-opp.skew_tolerance_ms - 1
        ),
        make_event(event_id="la", type="loaded", source_id="net_a", at=1_000),
    ]
    assert close_opportunity(opp, events).archive.credited_source_id == "net_a"


# --- revenue, outcome, flags ---------------------------------------------------------------


def test_revenue_sums_impression_revenue(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(
            event_id="i1", type="impression", at=1_000, revenue_micros=1_500, currency="USD"
        ),
        make_event(event_id="i2", type="impression", at=2_000, revenue_micros=250, currency="USD"),
        make_event(event_id="i3", type="impression", at=2_500),  # no revenue
        make_event(event_id="r", type="reward", at=3_000, revenue_micros=9_999, currency="USD"),
        make_event(event_id="l", type="loaded", at=500, revenue_micros=7_777, currency="USD"),
        make_event(
            event_id="late",
            type="impression",
            at=opp.closure_window_ms + 1,
            revenue_micros=100_000,
            currency="USD",
        ),
    ]
    archive = close_opportunity(opp, events).archive
    assert archive.revenue_micros == 1_750
    assert archive.currency == "USD"


def test_revenue_is_zero_and_currency_none_without_paid_impressions(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(event_id="i", type="impression", at=1_000, revenue_micros=0, currency="EUR")
    ]
    archive = close_opportunity(opp, events).archive
    assert archive.revenue_micros == 0
    assert archive.currency is None


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ((), "no_fill"),
        (("error", "closed"), "no_fill"),
        (("load_failed",), "load_failed"),
        (("load_failed", "loaded"), "loaded"),
        (("loaded", "load_failed"), "loaded"),
        (("loaded", "impression"), "impressed"),
        (("impression", "load_failed"), "impressed"),
        (("loaded", "impression", "click", "load_failed"), "clicked"),
        (("impression", "click", "reward"), "clicked"),
    ],
)
def test_outcome_is_highest_reached(make_opportunity, make_event, types, expected):
    opp = make_opportunity()
    events = [
        make_event(event_id=f"e{i}", type=t, source_id="net_a", at=1_000 + 10 * i)
        for i, t in enumerate(types)
    ]
    assert close_opportunity(opp, events).archive.outcome == expected


def test_rewarded_flag(make_opportunity, make_event):
    opp = make_opportunity()
    imp = make_event(event_id="i", type="impression", at=1_000)
    reward = make_event(event_id="r", type="reward", at=2_000)
    early_reward = make_event(event_id="r0", type="reward", at=-opp.skew_tolerance_ms - 1)
    assert close_opportunity(opp, [imp, reward]).archive.rewarded is True
    assert close_opportunity(opp, [imp]).archive.rewarded is False
    assert close_opportunity(opp, [imp, early_reward]).archive.rewarded is False


def test_counts_hold_only_counted_types(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(event_id="l1", type="loaded", at=100),
        make_event(event_id="l2", type="loaded", source_id="net_b", at=200),
        make_event(event_id="k", type="click", at=300),  # excluded: no impression
        make_event(event_id="x", type="error", at=400),
    ]
    archive = close_opportunity(opp, events).archive
    assert archive.counts == {"loaded": 2, "error": 1}
    assert archive.counted_events == 3
    assert archive.excluded_events == 1


def test_archive_carries_the_opportunity_and_rule_version(make_opportunity):
    opp = make_opportunity(config_version=17, placement_id="rewarded_video")
    archive = close_opportunity(opp, []).archive
    assert archive.opportunity_key == opp.opportunity_key
    assert archive.app_id == opp.app_id
    assert archive.placement_id == "rewarded_video"
    assert archive.opened_at_ms == opp.ts_ms
    assert archive.config_version == 17
    assert archive.rule_version == RULE_VERSION == "r1"


def test_every_event_is_stored_once_in_applied_order(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(event_id="z", at=3_000),
        make_event(event_id="b", at=1_000),
        make_event(event_id="a", at=1_000),
        make_event(event_id="far", at=-opp.skew_tolerance_ms * 2),
    ]
    closed = close_opportunity(opp, events)
    assert [s.event.event_id for s in closed.events] == ["far", "a", "b", "z"]
    assert all(not s.late for s in closed.events)
    assert closed.opportunity is opp
    assert sorted(events, key=event_order) == [s.event for s in closed.events]


def test_result_does_not_depend_on_input_order(make_opportunity, make_event):
    opp = make_opportunity()
    events = [
        make_event(event_id="l", type="loaded", at=100),
        make_event(event_id="i", type="impression", at=200, revenue_micros=5, currency="USD"),
        make_event(event_id="k", type="click", at=300),
        make_event(event_id="c", type="closed", at=400),
    ]
    assert close_opportunity(opp, events) == close_opportunity(opp, list(reversed(events)))


# --- inputs hash and rule version ----------------------------------------------------------


def test_inputs_hash_ignores_received_at_and_excluded_events(make_opportunity, make_event):
    opp = make_opportunity()
    counted = [
        make_event(event_id="l", type="loaded", at=100),
        make_event(event_id="i", type="impression", at=200, revenue_micros=5, currency="USD"),
    ]
    base = close_opportunity(opp, counted).archive

    received_later = [
        dataclasses.replace(e, received_at_ms=e.received_at_ms + 60_000) for e in counted
    ]
    assert close_opportunity(opp, received_later).archive.inputs_hash == base.inputs_hash

    with_excluded = [
        *counted,
        make_event(event_id="old", type="impression", at=-opp.skew_tolerance_ms - 1),
        make_event(event_id="k", type="click", source_id="net_b", at=300),
    ]
    closed = close_opportunity(opp, with_excluded)
    assert closed.archive.excluded_events == 2
    assert closed.archive.inputs_hash == base.inputs_hash
    assert inputs_hash(opp, counted) == base.inputs_hash


@pytest.mark.parametrize(
    "change",
    [
        {"server_ts_ms": 1_700_000_000_101},
        {"ts_ms": 1},
        {"source_id": "net_b"},
        {"attrs": {"k": "v"}},
        {"revenue_micros": 1, "currency": "USD"},
    ],
)
def test_inputs_hash_changes_with_counted_content(make_opportunity, make_event, change):
    opp = make_opportunity()
    event = make_event(event_id="l", type="loaded", at=100)
    assert inputs_hash(opp, [event]) != inputs_hash(opp, [dataclasses.replace(event, **change)])


def test_inputs_hash_covers_the_opportunity(make_opportunity):
    opp = make_opportunity()
    base = inputs_hash(opp, [])
    assert inputs_hash(dataclasses.replace(opp, config_version=4), []) != base
    assert inputs_hash(dataclasses.replace(opp, waterfall=opp.waterfall[:1]), []) != base
    assert inputs_hash(dataclasses.replace(opp, status="no_fill"), []) != base


def test_inputs_hash_is_independent_of_event_order(make_opportunity, make_event):
    opp = make_opportunity()
    a = make_event(event_id="a", at=100)
    b = make_event(event_id="b", at=100)
    c = make_event(event_id="c", at=50)
    assert inputs_hash(opp, [a, b, c]) == inputs_hash(opp, [c, b, a])


def test_inputs_hash_is_a_sha256_hex_digest(make_opportunity):
    digest = inputs_hash(make_opportunity(), [])
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")


def test_unknown_rule_version_is_refused(make_opportunity):
    with pytest.raises(ValueError, match="unknown rule_version"):
        close_opportunity(make_opportunity(), [], rule_version="r0")
    assert close_opportunity(make_opportunity(), [], rule_version="r1").archive.rule_version == "r1"


def _reference_canonical(opportunity, counted):  # type: ignore[no-untyped-def]
    """The definition: json.dumps of the document (what r1 hashes were taken over)."""
    import json

    from mediation.rules.closure import event_order

    document = {
        "opportunity": {
            "opportunity_key": opportunity.opportunity_key,
            "app_id": opportunity.app_id,
            "placement_id": opportunity.placement_id,
            "ts_ms": opportunity.ts_ms,
            "config_version": opportunity.config_version,
            "status": opportunity.status,
            "waterfall": [
                [e.source_id, e.floor_micros, e.timeout_ms] for e in opportunity.waterfall
            ],
        },
        "events": [
            {
                "event_id": e.event_id,
                "type": e.type,
                "ts_ms": e.ts_ms,
                "server_ts_ms": e.server_ts_ms,
                "source_id": e.source_id,
                "revenue_micros": e.revenue_micros,
                "currency": e.currency,
                "attrs": dict(e.attrs),
            }
            for e in sorted(counted, key=event_order)
        ],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_attr_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    _texts,
)


@given(
    app_id=_texts,
    placement=_texts,
    source=st.one_of(st.none(), _texts),
    currency=st.one_of(st.none(), _texts),
    revenue=st.one_of(st.none(), st.integers(0, 2**53)),
    attrs=st.dictionaries(_texts, _attr_values, max_size=4),
    event_id=_texts,
)
def test_canonical_inputs_are_byte_identical_to_the_json_definition(
    make_opportunity, make_event, app_id, placement, source, currency, revenue, attrs, event_id
):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from mediation.rules.closure import canonical_inputs

    opp = replace(make_opportunity(), app_id=app_id, placement_id=placement)
    events = [
        replace(
            make_event(at=1_000),
            event_id=event_id,
            source_id=source,
            currency=currency,
            revenue_micros=revenue,
            attrs=attrs,
        ),
        make_event(at=500, type="loaded"),
    ]
    assert canonical_inputs(opp, events) == _reference_canonical(opp, events)
