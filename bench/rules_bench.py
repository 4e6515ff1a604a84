"""The rules' hot paths, compiled (mypyc) against interpreted, in one run.

In memory only (no services): ``--opportunities`` closed opportunities of
the replay benchmark's mix (~1.8 events each) are turned into stored rows
as Postgres returns them, then each build, in its own child process
(``MEDIATION_RULES_BUILD=compiled`` / ``interpreted``), times per
opportunity:

- ``rows``: rows back into records (``storage.stored_records``:
  ``inputs_from_rows``, ``archive_of``; compiled in the compiled build);
- ``close``: ``close_opportunity`` with its ``inputs_hash``;
- ``recompute``: ``recompute_result`` (close + diff against the archive);
- ``replay``: the three as a range recompute runs them, plus each result's
  canonical line and hash (``replay.digest``): a range recompute without
  its database reads;
- ``worker``: the worker's state machine per message (``on_opportunity``,
  ``on_event``, ``drain``).

Each child runs ``--repeat`` rounds and reports the best round of each
stage in CPU time (``time.process_time``: steadier than wall time on a
shared machine); the result hashes of both builds must be equal. Reports microseconds
per opportunity (per message for ``worker``) and the ratio interpreted /
compiled (``speedup``). ``--json`` prints one JSON document instead of
the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGES = ("rows", "close", "recompute", "replay", "worker")


def _rows(opportunities: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """The replay benchmark's traffic, closed, as the stored rows of each table."""
    from bench.traffic import hour_of_traffic, waterfall
    from mediation.rules.closure import close_opportunity

    rng = random.Random(seed)
    waterfall_text = orjson.dumps(
        [{"source_id": e.source_id, "floor_micros": e.floor_micros, "timeout_ms": e.timeout_ms}
         for e in waterfall()]
    ).decode()  # fmt: skip
    tables: dict[str, list[dict[str, Any]]] = {
        "opportunities": [], "deliveries": [], "events": [], "archives": []
    }  # fmt: skip
    for n, (opportunity, events) in enumerate(hour_of_traffic(opportunities, rng)):
        key, app, ts = opportunity.opportunity_key, opportunity.app_id, opportunity.ts_ms
        archive = close_opportunity(opportunity, events).archive
        tables["opportunities"].append(
            {"opportunity_key": key, "app_id": app, "placement_id": opportunity.placement_id,
             "device_hash": opportunity.device_hash, "ts": ts, "client_ts": ts - 40,
             "config_version": 3, "rollout_bucket": n % 100,
             "context": '{"country":"US","os":"android"}', "closure_window_ms": 1_800_000,
             "grace_ms": 30_000, "skew_tolerance_ms": 300_000}
        )  # fmt: skip
        tables["deliveries"].append(
            {"opportunity_key": key, "delivery_id": f"del{n}", "status": "fill",
             "waterfall": waterfall_text, "expires_at": ts + 60_000}
        )  # fmt: skip
        for event in events:
            tables["events"].append(
                {"event_id": event.event_id, "app_id": app, "opportunity_key": key,
                 "type": event.type, "ts": event.ts_ms, "server_ts": event.server_ts_ms,
                 "received_at": event.received_at_ms, "source_id": event.source_id,
                 "revenue_micros": event.revenue_micros, "currency": event.currency,
                 "attrs": orjson.dumps(dict(event.attrs)).decode(), "late": False}
            )  # fmt: skip
        row = {name: getattr(archive, name) for name in (
            "opportunity_key", "app_id", "placement_id", "close_reason", "outcome", "rewarded",
            "credited_source_id", "revenue_micros", "currency", "counted_events",
            "excluded_events", "config_version", "rule_version", "inputs_hash")}  # fmt: skip
        row.update(
            opened_at=archive.opened_at_ms,
            closed_at=archive.closed_at_ms,
            counts=orjson.dumps(dict(archive.counts)).decode(),
        )
        tables["archives"].append(row)
    return tables


def _best(run: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        # CPU time of this process: other work on a shared machine inflates
        # wall time, not this (the builds run one after the other).
        started = time.process_time()
        result = run()
        best = min(best, time.process_time() - started)
    return best, result


def _child(opportunities: int, repeat: int, seed: int) -> dict[str, Any]:
    """Time every stage in this process's build (run with MEDIATION_RULES_BUILD set)."""
    import mediation
    from mediation.rules.closure import close_opportunity
    from mediation.rules.model import Event, Opportunity, Policy
    from mediation.rules.replay import recompute_result
    from mediation.rules.state import drain, on_event, on_opportunity
    from replay.digest import ResultDigest, canonical_line
    from storage.stored_records import archive_of, inputs_from_rows

    tables = _rows(opportunities, seed)
    opportunity_rows, delivery_rows = tables["opportunities"], tables["deliveries"]
    event_rows, archive_rows = tables["events"], tables["archives"]

    def rows() -> tuple[Any, dict[str, Any]]:
        inputs = inputs_from_rows(opportunity_rows, delivery_rows, event_rows)
        archives = {row["opportunity_key"]: archive_of(row) for row in archive_rows}
        return inputs, archives

    seconds: dict[str, float] = {}
    seconds["rows"], loaded = _best(rows, repeat)
    inputs, archives = loaded  # type: ignore[misc]
    keys = sorted(inputs)

    def close() -> list[Any]:
        return [close_opportunity(inputs[k].opportunity, inputs[k].events) for k in keys]

    def recompute() -> list[dict[str, Any]]:
        return [
            recompute_result(
                inputs[k].opportunity, inputs[k].events, inputs[k].late_events, archives[k]
            )
            for k in keys
        ]

    def replay() -> str:
        got, archived = rows()
        digest = ResultDigest()
        for key in sorted(got.keys() | archived.keys()):
            stored = got[key]
            digest.add(
                recompute_result(
                    stored.opportunity, stored.events, stored.late_events, archived[key]
                )
            )
        return digest.hexdigest()

    messages: list[Opportunity | Event] = []
    for key in keys:
        messages.append(inputs[key].opportunity)
        messages.extend(inputs[key].events)
    policy = Policy()

    def worker() -> str:
        states: dict[str, Any] = {}
        sha = hashlib.sha256()
        for item in messages:
            key = item.opportunity_key
            if isinstance(item, Opportunity):
                states[key], out = on_opportunity(states.get(key), item, 0, policy)
            else:
                states[key], out = on_event(states.get(key), item, 0, policy)
        for state in states.values():
            _, out = drain(state, policy)
            for output in out:
                sha.update(repr(output).encode())
        return sha.hexdigest()

    seconds["close"], closed = _best(close, repeat)
    seconds["recompute"], results = _best(recompute, repeat)
    seconds["replay"], replay_hash = _best(replay, repeat)
    seconds["worker"], worker_hash = _best(worker, repeat)
    lines = hashlib.sha256(b"".join(canonical_line(r) for r in results))  # type: ignore[attr-defined]
    archives_hash = hashlib.sha256(repr([c.archive for c in closed]).encode())  # type: ignore[attr-defined]
    per = {stage: len(keys) for stage in STAGES}
    per["worker"] = len(messages)
    return {
        "build": mediation.build_info()["build"] if hasattr(mediation, "build_info") else "-",
        "opportunities": len(keys),
        "messages": len(messages),
        "us": {stage: round(seconds[stage] / per[stage] * 1e6, 3) for stage in STAGES},
        "hashes": {
            "archives": archives_hash.hexdigest(),
            "recompute_lines": lines.hexdigest(),
            "replay": replay_hash,
            "worker": worker_hash,
        },
    }


def _run_build(build: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", f"--opportunities={args.opportunities}",
               f"--repeat={args.repeat}", f"--seed={args.seed}"]  # fmt: skip
    env = {**os.environ, "MEDIATION_RULES_BUILD": build}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"rules_bench: the {build} run failed: {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--opportunities", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.opportunities, args.repeat, args.seed)))
        return 0

    from bench.common import machine
    from mediation.text_table import render_table

    builds = {build: _run_build(build, args) for build in ("interpreted", "compiled")}
    if builds["compiled"]["build"] != "compiled":
        raise SystemExit("rules_bench: no compiled build (python -m mediation.compile)")
    identical = builds["interpreted"]["hashes"] == builds["compiled"]["hashes"]
    speedup = {
        stage: round(builds["interpreted"]["us"][stage] / builds["compiled"]["us"][stage], 2)
        for stage in STAGES
    }
    report = {
        "machine": machine(),
        "opportunities": builds["compiled"]["opportunities"],
        "messages": builds["compiled"]["messages"],
        "us_interpreted": builds["interpreted"]["us"],
        "us_compiled": builds["compiled"]["us"],
        "speedup": speedup,
        "speedup_compiled_vs_pure": speedup["replay"],
        "identical_outputs": identical,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        unit = {stage: "us/opportunity" for stage in STAGES} | {"worker": "us/message"}
        rows = [
            [stage, unit[stage], f"{report['us_interpreted'][stage]:.2f}",
             f"{report['us_compiled'][stage]:.2f}", f"{speedup[stage]:.2f}x"]
            for stage in STAGES
        ]  # fmt: skip
        headers = ["stage", "unit", "interpreted", "compiled", "speedup"]
        print(render_table("rules: interpreted vs compiled", headers, rows))
        print(f"outputs identical in both builds: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
