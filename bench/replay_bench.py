"""Replay: a one-hour range recomputed from Postgres and from Parquet, and key lookups.

Writes one hour of traffic at the seed's rate (``--opportunities``, 180,000
by default: 4.33M requests a day / 24, with 1.8 events each) through the
Postgres sink into a fresh database, the way the worker writes it. Then:

1. ``mediation replay --from --to --mode recompute`` of the hour with every
   day hot, through ``run_replay`` into a JSONL stream (discarded), recorded
   in ``replay_records`` as the CLI does;
2. the day is tiered (export, verify, record, drop: ``tier_day``) to a
   ``file://`` store (``--s3``: the local S3 server) and the same range is
   recomputed from Parquet; its hash must equal the hot one;
3. ``--lookups`` random keys are replayed one at a time from cold storage.

Reports events/s (stored events of the range / seconds), opportunities/s,
the peak RSS of the replays (this process; the traffic is generated in a
child) and the key lookups' p50/p95. The issue's target: a one-hour range
recompute at >= 100,000 events/s; a key from cold storage in p95 <= 300 ms
on file://, <= 1 s through the S3 server. ``--repeat`` runs each range
replay several times and reports the median.

``--jobs 1,2`` (the default) replays each range with each number of
processes (``run_replay(jobs=N)``, the CLI's ``--jobs``); ``hot_s`` and
``cold_s`` are those of the first, ``parallel_speedup`` is the hot hour's
t(jobs=1) / t(jobs=2) (``cold_parallel_speedup`` the same from Parquet), and
every run's hash must be the same. Before tiering, the hot hour is also
replayed (jobs=1) in two fresh processes, one with
``MEDIATION_RULES_BUILD=interpreted`` and one with the default build (the
variable acts at import): ``speedup_compiled_vs_pure`` is t(interpreted) /
t(compiled), null with ``"compiled_build": "absent"`` when the default
process ran the interpreted build too (nothing compiled, or stale).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_store, fresh_database, machine, median, peak_rss_mib
from bench.traffic import HOUR_MS, HOUR_START_MS, hour_of_traffic
from mediation.rules.closure import close_opportunity
from mediation.rules.model import ClosedOpportunity
from mediation.rules.replay import ReplayRequest, Selection
from mediation.rules.ulid import day_of_ms
from mediation.settings import Settings
from mediation.sim.summary import percentile
from mediation.tables import REPLAYED_TABLES as RECORD_TABLES
from mediation.text_table import render_table
from replay.output import JsonlOutput
from replay.run import ReplaySources, replay_results, run_replay
from sinks.postgres import PostgresWriter
from storage.cold import ColdStore
from storage.tier_job import tier_day


def _traffic(opportunities: int, rng: random.Random) -> list[object]:
    """Closed opportunities spread over the hour: ~1.8 events each, the seed's mix."""
    return [close_opportunity(o, events) for o, events in hour_of_traffic(opportunities, rng)]


def _fill(url: str, opportunities: int) -> int:
    """The hour's traffic written by the sink; its number of events.

    Run in a child process: the generated traffic's memory stays out of the
    replays' peak RSS.
    """
    items = _traffic(opportunities, random.Random(7))
    writer = PostgresWriter(url)
    for start in range(0, len(items), 5_000):
        writer.write(items[start : start + 5_000])  # type: ignore[arg-type]
    writer.close()
    return sum(len(item.events) for item in items if isinstance(item, ClosedOpportunity))


def _replay_hour(
    conn: psycopg.Connection, store: ColdStore, jobs: int = 1, sources: ReplaySources | None = None
) -> tuple[float, str, int]:
    request = ReplayRequest(Selection.of_range(HOUR_START_MS, HOUR_START_MS + HOUR_MS), "recompute")
    with open(os.devnull, "wb") as sink:
        started = time.monotonic()
        _, digest, _ = run_replay(conn, store, request, JsonlOutput(sink), requested_by="bench",
                                  jobs=jobs, sources=sources)  # fmt: skip
        return time.monotonic() - started, digest.hexdigest(), digest.records


def _rules_build() -> str:
    """The build of the rules this process runs: how ``mediation.rules.closure`` loaded."""
    from mediation.rules import closure

    return "interpreted" if str(closure.__file__).endswith(".py") else "compiled"


def _replay_only(url: str, repeat: int) -> int:
    """The child of ``_in_fresh_process``: the hot hour, ``repeat`` times; one JSON line."""
    with psycopg.connect(url, autocommit=True) as conn, tempfile.TemporaryDirectory() as scratch:
        store = bench_store(False, "replay-bench", scratch, None)  # the hour is all hot
        runs = [_replay_hour(conn, store) for _ in range(repeat)]
    seconds = median([run[0] for run in runs])
    print(json.dumps({"seconds": seconds, "hash": runs[0][1], "build": _rules_build()}))
    return 0


def _in_fresh_process(url: str, repeat: int, build: str) -> dict[str, object]:
    """The hot hour replayed in a new process with ``MEDIATION_RULES_BUILD=build``."""
    env = {**os.environ, "MEDIATION_RULES_BUILD": build}
    done = subprocess.run(
        [sys.executable, __file__, "--replay-only", url, "--repeat", str(repeat)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"replay with MEDIATION_RULES_BUILD={build} failed: {done.stderr}")
    figures: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return figures


def _jobs_list(text: str) -> list[int]:
    jobs = [int(part) for part in text.split(",") if part.strip()]
    if not jobs or min(jobs) < 1:
        raise argparse.ArgumentTypeError(f"--jobs wants numbers >= 1, e.g. 1,2; got {text!r}")
    return jobs


def _speedup(by_jobs: dict[int, float], slow: int, fast: int) -> float | None:
    return by_jobs[slow] / by_jobs[fast] if slow in by_jobs and fast in by_jobs else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--opportunities", type=int, default=180_000)
    parser.add_argument("--s3", action="store_true", help="tier to the local S3 server")
    parser.add_argument("--lookups", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--jobs",
        type=_jobs_list,
        default=[1, 2],
        help="process counts to replay each range with, e.g. 1,2 (the first gives hot_s/cold_s)",
    )
    parser.add_argument("--replay-only", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay_only:
        return _replay_only(args.replay_only, args.repeat)
    base = Settings.from_env()
    with fresh_database(base.database_url) as url, tempfile.TemporaryDirectory() as scratch:
        store = bench_store(args.s3, "replay-bench", scratch, base.aws_endpoint_url)
        sources = ReplaySources(
            url,
            store.url,
            base.aws_endpoint_url or "http://127.0.0.1:9000",
            base.aws_region,
            base.aws_credentials_set,
        )
        started = time.monotonic()
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            events = pool.apply(_fill, (url, args.opportunities))
        fill_s = time.monotonic() - started
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            keys = [
                key
                for (key,) in conn.execute(
                    "SELECT opportunity_key FROM opportunity_records ORDER BY opportunity_key"
                ).fetchall()
            ]
            hot_by_jobs = {
                jobs: [_replay_hour(conn, store, jobs, sources) for _ in range(args.repeat)]
                for jobs in args.jobs
            }
            builds = {
                build: _in_fresh_process(url, args.repeat, build)
                for build in ("interpreted", "auto")
            }
            day = day_of_ms(HOUR_START_MS)
            for table in RECORD_TABLES:
                tier_day(conn, store, table, day)
            cold_by_jobs = {
                jobs: [_replay_hour(conn, store, jobs, sources) for _ in range(args.repeat)]
                for jobs in args.jobs
            }
            rng = random.Random(11)
            lookups_ms = []
            for key in rng.sample(keys, min(args.lookups, len(keys))):
                request = ReplayRequest(Selection.of_keys([key]))
                started = time.monotonic()
                (result,) = replay_results(conn, store, request)
                lookups_ms.append((time.monotonic() - started) * 1000)
                assert "missing" not in result, key
    runs = [run for by_jobs in (hot_by_jobs, cold_by_jobs) for rs in by_jobs.values() for run in rs]
    hashes = {digest for _, digest, _ in runs} | {str(run["hash"]) for run in builds.values()}
    if len(hashes) != 1:
        print(f"replay hashes differ (hot, cold, jobs, builds): {hashes}", file=sys.stderr)
        return 1
    hot_s_by_jobs = {jobs: median([run[0] for run in rs]) for jobs, rs in hot_by_jobs.items()}
    cold_s_by_jobs = {jobs: median([run[0] for run in rs]) for jobs, rs in cold_by_jobs.items()}
    records = runs[0][2]
    hot_s, cold_s = hot_s_by_jobs[args.jobs[0]], cold_s_by_jobs[args.jobs[0]]
    compiled = builds["auto"]["build"] == "compiled"
    build_s = {name: float(str(run["seconds"])) for name, run in builds.items()}
    figures = {
        "opportunities": records,
        "events": events,
        "fill_s": fill_s,
        "hot_s": hot_s,
        "cold_s": cold_s,
        "hot_events_per_s": events / hot_s,
        "cold_events_per_s": events / cold_s,
        "hot_opportunities_per_s": records / hot_s,
        "cold_opportunities_per_s": records / cold_s,
        "lookup_p50_ms": percentile(lookups_ms, 50),
        "lookup_p95_ms": percentile(lookups_ms, 95),
        "peak_rss_mib": peak_rss_mib(os.getpid()),
        "store": "s3" if args.s3 else "file",
        "repeat": args.repeat,
        "jobs": args.jobs,
        "hot_s_by_jobs": {str(jobs): seconds for jobs, seconds in hot_s_by_jobs.items()},
        "cold_s_by_jobs": {str(jobs): seconds for jobs, seconds in cold_s_by_jobs.items()},
        "parallel_speedup": _speedup(hot_s_by_jobs, 1, 2),
        "cold_parallel_speedup": _speedup(cold_s_by_jobs, 1, 2),
        "rules_build": _rules_build(),
        "compiled_build": "used" if compiled else "absent",
        "builds_used": {
            "interpreted": builds["interpreted"]["build"],
            "default": builds["auto"]["build"],
        },
        "hot_s_interpreted": build_s["interpreted"],
        "hot_s_default_build": build_s["auto"],
        "speedup_compiled_vs_pure": build_s["interpreted"] / build_s["auto"] if compiled else None,
    }
    print(json.dumps({"bench": "replay", "machine": machine(), **figures}))
    print(
        render_table(
            f"replay recompute of one hour ({records:,} opportunities, {events:,} events, "
            f"{figures['store']}; median of {args.repeat})",
            ["source", "seconds", "events/s", "opportunities/s"],
            [
                [
                    "Postgres",
                    round(hot_s, 2),
                    round(figures["hot_events_per_s"]),
                    round(figures["hot_opportunities_per_s"]),
                ],
                [
                    "Parquet",
                    round(cold_s, 2),
                    round(figures["cold_events_per_s"]),
                    round(figures["cold_opportunities_per_s"]),
                ],
            ],
        ),
        file=sys.stderr,
    )
    print(
        render_table(
            "by processes (--jobs) and rules build (hot hour)",
            ["run", "seconds", "events/s"],
            [[f"Postgres, jobs={jobs}", round(t, 2), round(events / t)]
             for jobs, t in hot_s_by_jobs.items()]
            + [[f"Parquet, jobs={jobs}", round(t, 2), round(events / t)]
               for jobs, t in cold_s_by_jobs.items()]
            + [[f"Postgres, {name} build ({builds[name]['build']})", round(t, 2),
                round(events / t)] for name, t in build_s.items()],
        ),
        file=sys.stderr,
    )  # fmt: skip
    print(
        f"key replay from cold storage: p50 {figures['lookup_p50_ms']:.0f} ms, "
        f"p95 {figures['lookup_p95_ms']:.0f} ms ({len(lookups_ms)} keys); "
        f"peak RSS {figures['peak_rss_mib']:.0f} MiB",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
