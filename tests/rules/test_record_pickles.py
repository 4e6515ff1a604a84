"""Pickles of the records and states: the same in both builds, and those of older code load.

The worker's recovery snapshots pickle its states (records inside), and a
snapshot written by one build or by older code (plain frozen slotted
dataclasses: the class by name and its field values) is restored by
whichever build runs next. This module runs in each build (the test
scripts run tests/rules in both).
"""

from __future__ import annotations

import base64
import dataclasses
import pickle
from typing import Any

import pytest
from old_record_pickles import OLD_PICKLES

from mediation.rules.closure import close_opportunity
from mediation.rules.model import Event, Opportunity, Policy, WaterfallEntry
from mediation.rules.state import drain, on_event, on_opportunity


def _objects() -> dict[str, Any]:
    """What OLD_PICKLES holds, built by this code (the fixture's code built the same)."""
    waterfall = (WaterfallEntry("net_a", 1500, 800), WaterfallEntry("net_b", 900, 800))
    opportunity = Opportunity(
        "01JD0000000000000000000001", "app_1", "home", "d" * 32, 1_700_000_000_000,
        1_699_999_999_750, 3, 42, {"country": "US"}, "del_1", "fill", waterfall,
        1_700_000_060_000, 1_800_000, 30_000, 300_000, source_partition=2, source_offset=17,
    )  # fmt: skip
    key = opportunity.opportunity_key
    event = Event(
        "e1", "app_1", key, "impression", 1_700_000_001_000, 1_700_000_001_000,
        1_700_000_001_020, "net_a", 2500, "USD", {"a": 1, "b": "x"},
        source_partition=1, source_offset=5, source_bytes=b"raw",
    )  # fmt: skip
    bare_event = Event(
        "e2", "app_1", key, "closed", 1_700_000_002_000, 1_700_000_002_000, 1_700_000_002_020
    )
    policy = Policy(max_orphan_keys_per_app=7)
    state, _ = on_opportunity(None, opportunity, 0, policy)
    state, _ = on_event(state, event, 0, policy)
    state, _ = on_event(state, bare_event, 0, policy)
    archived_state, outputs = drain(state, policy)
    return {
        "opportunity": opportunity,
        "event": event,
        "bare_event": bare_event,
        "policy": policy,
        "closed": close_opportunity(opportunity, [event, bare_event]),
        "open_state": state,
        "outputs": outputs,
        "archived_state": archived_state,
    }


def _old(name: str) -> bytes:
    return base64.b64decode("".join(OLD_PICKLES[name]))


@pytest.mark.parametrize("name", sorted(OLD_PICKLES))
def test_pickles_of_the_plain_dataclass_records_load_equal(name: str):
    expected = _objects()[name]
    loaded = pickle.loads(_old(name))
    assert loaded == expected
    assert repr(loaded) == repr(expected)


@pytest.mark.parametrize("name", sorted(OLD_PICKLES))
def test_this_build_pickles_as_the_plain_dataclass_records_did(name: str):
    """The same bytes: so each build loads the other's (and older code loads both)."""
    assert pickle.dumps(_objects()[name], protocol=4) == _old(name)
    assert pickle.dumps(pickle.loads(_old(name)), protocol=4) == _old(name)


def test_fields_the_pickle_does_not_hold_stay_unset():
    """A record pickled before fields were added at its end: as a slotted dataclass leaves it."""
    event = _objects()["event"]
    state = [getattr(event, f.name) for f in dataclasses.fields(Event)][:-3]
    old = Event.__new__(Event)
    old.__setstate__(state)
    assert not hasattr(old, "source_partition")
    assert old == event
    loaded = pickle.loads(pickle.dumps(event))
    assert (loaded.source_partition, loaded.source_offset, loaded.source_bytes) == (1, 5, b"raw")


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_records_survive_every_protocol_from_2(protocol: int):
    for value in _objects().values():
        assert pickle.loads(pickle.dumps(value, protocol=protocol)) == value
