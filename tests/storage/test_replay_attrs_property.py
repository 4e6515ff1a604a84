"""Property: any attrs the gateway accepts replay with ``inputs_hash_matches``, hot and cold.

The hash of an archive is taken over the attrs the worker held; replay
reads them back from Postgres ``jsonb`` (which has no ``-0.0`` and reads
``1e16`` back as an integer) or from the day's Parquet (``jsonb``'s
text). Each example sends hypothesis-made attrs the real way (JSON bytes
parsed as the gateway parses them, validated, through the wire encoding
to the worker's record), closes and writes the opportunities, replays
them from Postgres, tiers their day and replays them from Parquet.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import orjson
import pytest
from builders import T0, opportunity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediation.rules.closure import close_opportunity
from mediation.rules.model import ClosedOpportunity
from mediation.rules.replay import ReplayRequest, Selection
from mediation.rules.ulid import encode_ulid, ulid_day
from mediation.rules.validation import MAX_ATTRS, Rejection, normalise_event
from mediation.tables import REPLAYED_TABLES
from mediation.wire import decode_event, encode_event_fields
from replay.run import replay_results
from sinks.postgres import PostgresWriter
from storage.cold import FileColdStore
from storage.db import connect
from storage.tier_job import tier_day

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
MAX_SAFE_INT = 2**53 - 1
_DAYS = itertools.count(1)  # each example on a day of its own, so it can be tiered alone

# What a client can put in a JSON text: no NUL (refused), no lone surrogates
# (not UTF-8; the gateway's JSON parser refuses them).
_TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-MAX_SAFE_INT, MAX_SAFE_INT),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 1.0, 1e15, 1e16, 1.5e-7, 5e-324, 0.1, 2.5e300]),
    st.text(_TEXT, max_size=256),
)
ATTRS = st.dictionaries(st.text(_TEXT, max_size=64), _VALUES, max_size=MAX_ATTRS)


def _ingested(key: str, ts_ms: int, attrs: dict[str, object]) -> dict[str, object] | Rejection:
    """The event as the worker gets it from the gateway, or the gateway's refusal."""
    body = orjson.dumps({"event_id": f"e{key}", "opportunity_key": key, "type": "loaded",
                         "ts": ts_ms, "source_id": "net_a", "attrs": attrs})  # fmt: skip
    return normalise_event(
        orjson.loads(body),
        app_id="app",
        sent_at_ms=ts_ms,
        received_at_ms=ts_ms,
        min_key_time_ms=0,
        max_key_time_ms=ts_ms,
    )


def _unsafe_integral(value: object) -> bool:
    return isinstance(value, float) and value.is_integer() and abs(value) > MAX_SAFE_INT


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(many=st.lists(ATTRS, min_size=1, max_size=6))
def test_stored_attrs_replay_with_a_matching_inputs_hash_hot_and_cold(
    database_url: str, tmp_path: Path, many: list[dict[str, object]]
) -> None:
    start_ms = T0 + next(_DAYS) * DAY_MS
    closed: list[ClosedOpportunity] = []
    for n, attrs in enumerate(many):
        key = encode_ulid(start_ms + n, os.urandom(10))
        fields = _ingested(key, start_ms + n + 10, attrs)
        if isinstance(fields, Rejection):
            # The one refusal of attrs made of accepted types: an integer
            # beyond the safe range, written as a float (1e16).
            assert fields.code == "invalid_attrs", fields
            assert any(_unsafe_integral(value) for value in attrs.values()), fields
            continue
        event = decode_event(encode_event_fields(fields))
        closed.append(close_opportunity(opportunity(key, ts_ms=start_ms + n), [event]))
    if not closed:
        return
    writer = PostgresWriter(database_url)
    writer.write(list(closed))
    writer.close()
    keys = Selection.of_keys(c.opportunity.opportunity_key for c in closed)
    store = FileColdStore(tmp_path / f"cold-{start_ms}")
    with connect(database_url, autocommit=True) as conn:
        for tier in ("hot", "cold"):
            if tier == "cold":
                for table in REPLAYED_TABLES:
                    tier_day(conn, store, table, ulid_day(keys.keys[0]))
            snapshots = list(replay_results(conn, store, ReplayRequest(keys, "snapshot")))
            recomputed = list(replay_results(conn, store, ReplayRequest(keys, "recompute")))
            mismatched = [s["counted_events"] for s in snapshots if not s["inputs_hash_matches"]]
            assert not mismatched, (tier, mismatched)
            assert [r["changes"] for r in recomputed] == [{}] * len(closed), tier
