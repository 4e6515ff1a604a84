"""The child of tests/rules/test_compiled_equivalence.py: one build's outputs for given traffic.

Run with ``MEDIATION_RULES_BUILD`` set. Reads JSON lines, each a list of
scenarios ``[opportunity_fields, [event_fields, ...]]``; answers each line
with one JSON line of what the build made of them: the closing records
(pickled: the bytes a snapshot or a process boundary carries), their
``inputs_hash``es, the worker state machine's outputs and final states,
and the replay results (recompute and snapshot, from the rows the records
are stored as) with their hash over canonical lines (replay/digest.py's
form). The first line out names the build that runs.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import pickle
import sys
from typing import Any

import orjson

import mediation
from mediation import native
from mediation.rules.closure import close_opportunity
from mediation.rules.model import Event, Opportunity, Policy, WaterfallEntry
from mediation.rules.replay import recompute_result, snapshot_result
from mediation.rules.state import drain, on_event, on_opportunity
from storage.stored_records import archive_of, inputs_from_rows

POLICY = Policy()
LINE = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE  # replay/digest.py's canonical line


def _opportunity(fields: dict[str, Any]) -> Opportunity:
    ts = fields["ts_ms"]
    return Opportunity(
        opportunity_key=fields["opportunity_key"], app_id="app_1", placement_id="home",
        device_hash="d" * 32, ts_ms=ts, client_ts_ms=ts - 250,
        config_version=fields["config_version"], rollout_bucket=42,
        context={"country": "US"}, delivery_id="del_1", status=fields["status"],
        waterfall=tuple(WaterfallEntry(*entry) for entry in fields["waterfall"]),
        expires_at_ms=ts + 60_000, closure_window_ms=fields["closure_window_ms"],
        grace_ms=fields["grace_ms"], skew_tolerance_ms=fields["skew_tolerance_ms"],
    )  # fmt: skip


def _rows(opportunity: Opportunity, events: list[Event]) -> tuple[dict[str, Any], ...]:
    """The stored rows of an opportunity, its delivery and its events (as Postgres reads them)."""
    waterfall = [
        {"source_id": e.source_id, "floor_micros": e.floor_micros, "timeout_ms": e.timeout_ms}
        for e in opportunity.waterfall
    ]
    opportunity_row = {
        "opportunity_key": opportunity.opportunity_key, "app_id": opportunity.app_id,
        "placement_id": opportunity.placement_id, "device_hash": opportunity.device_hash,
        "ts": opportunity.ts_ms, "client_ts": opportunity.client_ts_ms,
        "config_version": opportunity.config_version,
        "rollout_bucket": opportunity.rollout_bucket,
        "context": json.dumps(dict(opportunity.context)),
        "closure_window_ms": opportunity.closure_window_ms, "grace_ms": opportunity.grace_ms,
        "skew_tolerance_ms": opportunity.skew_tolerance_ms,
    }  # fmt: skip
    delivery_row = {
        "opportunity_key": opportunity.opportunity_key, "delivery_id": opportunity.delivery_id,
        "status": opportunity.status, "waterfall": json.dumps(waterfall),
        "expires_at": opportunity.expires_at_ms,
    }  # fmt: skip
    event_rows = [
        {"event_id": e.event_id, "app_id": e.app_id, "opportunity_key": e.opportunity_key,
         "type": e.type, "ts": e.ts_ms, "server_ts": e.server_ts_ms,
         "received_at": e.received_at_ms, "source_id": e.source_id,
         "revenue_micros": e.revenue_micros,
         "currency": None if e.currency is None else e.currency.ljust(3),  # char(3)
         "attrs": json.dumps(dict(e.attrs)), "late": n % 3 == 2}
        for n, e in enumerate(events)
    ]  # fmt: skip
    return opportunity_row, delivery_row, event_rows


def _archive_row(closed: Any) -> dict[str, Any]:
    archive = closed.archive
    row = {
        name: getattr(archive, name)
        for name in ("opportunity_key", "app_id", "placement_id", "close_reason", "outcome",
                     "rewarded", "credited_source_id", "revenue_micros", "counted_events",
                     "excluded_events", "config_version", "rule_version", "inputs_hash")
    }  # fmt: skip
    row.update(
        opened_at=archive.opened_at_ms,
        closed_at=archive.closed_at_ms,
        currency=archive.currency,
        counts=json.dumps(dict(archive.counts)),
    )
    return row


def outputs(scenarios: list[Any]) -> dict[str, Any]:
    closed_pickles, hashes, worker, results = hashlib.sha256(), [], hashlib.sha256(), []
    opportunity_rows, delivery_rows, event_rows, archive_rows = [], [], [], []
    for opportunity_fields, event_fields in scenarios:
        opportunity = _opportunity(opportunity_fields)
        events = [Event(app_id="app_1", **fields) for fields in event_fields]
        closed = close_opportunity(opportunity, events)
        closed_pickles.update(pickle.dumps(closed, protocol=5))
        closed_pickles.update(repr(closed).encode())
        hashes.append(closed.archive.inputs_hash)
        # The worker: the opportunity among its events, then the end of input.
        state = None
        middle = len(events) // 2
        for item in [*events[:middle], opportunity, *events[middle:]]:
            if isinstance(item, Opportunity):
                state, out = on_opportunity(state, item, 0, POLICY)
            else:
                state, out = on_event(state, item, 0, POLICY)
            worker.update(pickle.dumps((state, out), protocol=5))
        state, out = drain(state, POLICY)
        worker.update(pickle.dumps((state, out), protocol=5))
        worker.update(repr(out).encode())
        opportunity_row, delivery_row, rows = _rows(opportunity, events)
        opportunity_rows.append(opportunity_row)
        delivery_rows.append(delivery_row)
        event_rows.extend(rows)
        archive_rows.append(_archive_row(closed))
    inputs = inputs_from_rows(opportunity_rows, delivery_rows, event_rows)
    archives = {row["opportunity_key"]: archive_of(row) for row in archive_rows}
    replay = hashlib.sha256()
    for key in sorted(inputs):
        stored, archive = inputs[key], archives[key]
        replay.update(pickle.dumps(stored, protocol=5))
        for result in (
            recompute_result(stored.opportunity, stored.events, stored.late_events, archive),
            snapshot_result(stored.opportunity, stored.events, archive),
        ):
            results.append(result["opportunity_key"])
            replay.update(orjson.dumps(result, option=LINE))
    return {
        "closed": closed_pickles.hexdigest(),
        "inputs_hashes": hashes,
        "worker": worker.hexdigest(),
        "replay": replay.hexdigest(),
        "results": len(results),
    }


def main() -> None:
    for module in native.COMPILED_MODULES:  # all of them, so build_info names each one's
        importlib.import_module(module)
    print(json.dumps(mediation.build_info()), flush=True)
    for line in sys.stdin:
        print(json.dumps(outputs(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
