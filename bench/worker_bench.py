"""Worker throughput: Kafka -> rules -> committed Postgres rows, against a raw baseline.

A private broker (started here) is pre-filled with ``--events`` simulated
events in the seed's traffic shape (1.8 events per request, fills, no-fills,
load failures, impressions with revenue, clicks, rewards; 5% resent
duplicates, device clock skew, local reordering) plus their opportunities.
Then, each against a fresh database:

- ``raw``: a plain confluent-kafka consume loop that COPYs every message
  (key, JSON value) into one table: no rules, no state (the baseline);
- ``worker-w1``: one ``mediation worker`` process (all partitions) from
  offset 0 until every opportunity is archived and every distinct event stored;
- ``worker-pN`` (``--processes N``): N processes, ``--member i/N`` each
  owning its share of the partitions, to the same end.

With several processes the figures add ``cpu_per_message_us`` and, against
``worker-w1`` of the same run, ``cpu_per_message_vs_w1`` and
``throughput_vs_w1`` (the scale-out measures of docs/benchmarks.md).

Reports messages/s and events/s end to end (start of the process until the
last row is committed), the ratio to the raw baseline, and peak RSS.

    python bench/worker_bench.py --events 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import psycopg
from confluent_kafka import Producer
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    cpu_seconds,
    current_rss_mib,
    fresh_database,
    machine,
    peak_rss_mib,
    private_broker,
    py_spy,
)
from mediation.rules.model import Event, Opportunity, WaterfallEntry
from mediation.rules.ulid import encode_ulid
from mediation.settings import Settings
from mediation.sim.processes import free_port, mediation_command, running
from mediation.text_table import render_table
from mediation.topics import ensure_topics, producer_config
from mediation.wire import encode_event, encode_opportunity

PARTITIONS = 4
WINDOW_MS, GRACE_MS, LATENESS_MS = 2_000, 500, 500
WATERFALL = (
    WaterfallEntry("net_alpha", 2_000_000, 1_500),
    WaterfallEntry("net_beta", 1_200_000, 1_500),
    WaterfallEntry("net_gamma", 500_000, 2_000),
)


def _traffic(
    events_wanted: int, seed: int, window_ms: int = WINDOW_MS
) -> Iterator[tuple[bytes, Opportunity, list[Event]]]:
    """Opportunities with their events, in the seed's proportions (1.8 events each)."""
    rng = random.Random(seed)
    made = 0
    start_ms = int(time.time() * 1000)
    i = 0
    while made < events_wanted:
        ts = start_ms + i // 50  # ~50 requests per millisecond of event time
        key = encode_ulid(ts, rng.randbytes(10))
        filled = rng.random() < 0.85
        opp = Opportunity(
            opportunity_key=key,
            app_id=f"app{rng.randrange(20)}",
            placement_id=rng.choice(("interstitial", "rewarded", "banner")),
            device_hash=f"{rng.getrandbits(128):032x}",
            ts_ms=ts,
            client_ts_ms=ts - rng.randrange(-2_000, 2_000),  # device clock skew
            config_version=1,
            rollout_bucket=rng.randrange(100),
            context={"country": rng.choice(("US", "DE", "BR", "IN")), "os": "android"},
            delivery_id=encode_ulid(ts, rng.randbytes(10)),
            status="fill" if filled else "no_fill",
            waterfall=WATERFALL if filled else (),
            expires_at_ms=ts + 300_000,
            closure_window_ms=window_ms,
            grace_ms=GRACE_MS,
            skew_tolerance_ms=1_000,
        )
        events: list[Event] = []
        if filled:
            source = "net_alpha"
            if rng.random() < 0.15:
                events.append(_event(opp, len(events), "load_failed", source, 200))
                source = "net_beta"
            events.append(_event(opp, len(events), "loaded", source, 400))
            if rng.random() < 0.8:
                revenue = rng.randrange(500, 5_000)
                events.append(_event(opp, len(events), "impression", source, 600, revenue))
                if rng.random() < 0.1:
                    events.append(_event(opp, len(events), "click", source, 900))
                elif rng.random() < 0.05:
                    events.append(_event(opp, len(events), "reward", source, 1_000))
        made += len(events)
        i += 1
        yield key.encode(), opp, events


def _event(
    opp: Opportunity, n: int, kind: str, source: str, at: int, revenue: int | None = None
) -> Event:
    return Event(
        event_id=f"{opp.opportunity_key}-{n}",
        app_id=opp.app_id,
        opportunity_key=opp.opportunity_key,
        type=kind,
        ts_ms=opp.ts_ms + at,
        server_ts_ms=opp.ts_ms + at,
        received_at_ms=opp.ts_ms + at + 300,
        source_id=source,
        revenue_micros=revenue,
        currency="USD" if revenue is not None else None,
    )


def _prefill(
    bootstrap: str, prefix: str, events_wanted: int, window_ms: int = WINDOW_MS
) -> dict[str, int]:
    producer = Producer(
        producer_config(
            bootstrap,
            {
                "linger.ms": 20,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 1_000_000,
                "compression.type": "lz4",
            },
        )
    )
    rng = random.Random(7)
    counts = {"opportunities": 0, "events": 0, "messages": 0}
    # (topic, key, value, broker timestamp): the gateway produces each record
    # when it receives it, so the broker timestamp (what the worker's
    # watermark reads) is the opportunity's ts and the event's received_at.
    pending: list[tuple[str, bytes, bytes, int]] = []
    for key, opp, events in _traffic(events_wanted, seed=1, window_ms=window_ms):
        pending.append((f"{prefix}opportunities.v1", key, encode_opportunity(opp), opp.ts_ms))
        counts["opportunities"] += 1
        for event in events:
            value = encode_event(event)
            pending.append((f"{prefix}events.v1", key, value, event.received_at_ms))
            counts["events"] += 1
            if rng.random() < 0.05:  # the SDK resent it
                pending.append((f"{prefix}events.v1", key, value, event.received_at_ms))
        if len(pending) >= 200:
            rng.shuffle(pending)  # local reordering, across opportunities
            for message in pending:
                _produce(producer, *message)
            counts["messages"] += len(pending)
            pending.clear()
    for message in pending:
        _produce(producer, *message)
    counts["messages"] += len(pending)
    assert producer.flush(120) == 0, "prefill not confirmed"
    return counts


def _produce(producer: Producer, topic: str, key: bytes, value: bytes, timestamp_ms: int) -> None:
    while True:
        try:
            producer.produce(topic, value, key, timestamp=timestamp_ms)
            return
        except BufferError:
            producer.poll(0.1)


def _run_raw(bootstrap: str, prefix: str, total: int, database_url: str) -> dict[str, float]:
    topics = f"{prefix}opportunities.v1,{prefix}events.v1"
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("raw_consume.py")),
            bootstrap,
            topics,
            str(PARTITIONS),
            str(total),
            database_url,
        ]
    )
    rss = 0.0
    while proc.poll() is None:
        with contextlib.suppress(OSError):
            rss = max(rss, peak_rss_mib(proc.pid))
        time.sleep(0.2)
    if proc.returncode != 0:
        raise RuntimeError(f"raw baseline failed with {proc.returncode}")
    return {"seconds": time.monotonic() - started, "peak_rss_mib": rss}


def _worker_env(database_url: str, bootstrap: str, prefix: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_PREFIX": prefix,
        "MEDIATION_LOG_LEVEL": "WARNING",
        **extra,
    }


def _count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def _wait_for_bytewax(pid: int) -> None:
    """Wait until ``mediation worker`` has exec'd into ``python -m bytewax.run``."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    deadline = time.monotonic() + 30
    while b"bytewax.run" not in cmdline.read_bytes():
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not start Bytewax within 30 s")
        time.sleep(0.05)


def _counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _worker_commands(processes: int) -> list[list[str]]:
    """``mediation worker`` command lines: ``processes`` members, each owning its share."""
    return [
        mediation_command("worker", "--member", f"{index}/{processes}", "--metrics-port", "0")
        for index in range(processes)
    ]


def _run_worker(
    env: dict[str, str],
    name: str,
    commands: list[list[str]],
    counts: dict[str, int],
    database_url: str,
    log_dir: Path,
    profile: Path | None = None,
) -> dict[str, float]:
    """Run the worker process(es) until every row is stored; CPU and RSS summed over them."""
    started = time.monotonic()
    rss: dict[int, float] = {}
    with (
        contextlib.ExitStack() as processes,
        psycopg.connect(database_url, autocommit=True) as conn,
        contextlib.ExitStack() as sampling,
    ):
        workers = [
            processes.enter_context(
                running(f"{name}-{index}", command, env, log_dir / f"{name}-{index}.log")
            )
            for index, command in enumerate(commands)
        ]
        if profile is not None:
            _wait_for_bytewax(workers[0].pid)  # py-spy would lose it across the exec
            sampling.enter_context(py_spy(workers[0].pid, profile, gil_only=True))
        deadline = started + 3_600
        while True:
            for worker in workers:
                if not worker.alive():
                    raise RuntimeError(f"worker exited: {worker.tail()}")
                with contextlib.suppress(OSError):
                    rss[worker.pid] = max(rss.get(worker.pid, 0.0), peak_rss_mib(worker.pid))
            archived, stored = _count(conn, "archive_records"), _count(conn, "event_records")
            print(
                f"\r  {name}: {time.monotonic() - started:6.1f}s  "
                f"{stored:,}/{counts['events']:,} events  "
                f"{archived:,}/{counts['opportunities']:,} archives",
                end="",
                file=sys.stderr,
            )
            if archived >= counts["opportunities"] and stored >= counts["events"]:
                print(file=sys.stderr)
                cpu = sum(cpu_seconds(worker.pid) for worker in workers)
                break
            if time.monotonic() > deadline:
                raise RuntimeError("worker did not finish within an hour")
            time.sleep(1.0)
        seconds = time.monotonic() - started
        letters = _count(conn, "dead_letters")
        # Nothing in this traffic is late: a late event here means the
        # watermark closed an opportunity before all of its input was read.
        row = conn.execute("SELECT count(*) FROM event_records WHERE late").fetchone()
        late = int(row[0]) if row else 0
    return {
        "seconds": seconds,
        "worker_cpu_s": cpu,
        "peak_rss_mib": sum(rss.values()),
        "dead_letters": letters,
        "late_events": late,
    }


def _scrape(url: str, name: str) -> float:
    """Sum of a metric's samples (all label sets); -1 while the worker does not answer."""
    with contextlib.suppress(httpx.HTTPError):
        text = httpx.get(url, timeout=10).text
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith((name + " ", name + "{"))
        )
    return -1.0


def _open_state(env: dict[str, str], counts: dict[str, int], log: Path) -> dict[str, float]:
    """RSS of one worker once it has read everything (fills stay open: an hour's window)."""
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    started = time.monotonic()
    with running(
        "worker",
        mediation_command("worker", "--metrics-port", str(metrics_port)),
        env,
        log,
    ) as worker:
        while True:
            if not worker.alive():
                raise RuntimeError(f"worker exited: {worker.tail()}")
            read = _scrape(url, "mediation_worker_messages_total")
            open_now = _scrape(url, "mediation_worker_open_opportunities")
            print(
                f"\r  open state: {time.monotonic() - started:6.1f}s  "
                f"{read:,.0f}/{counts['messages']:,} messages read, {open_now:,.0f} open",
                end="",
                file=sys.stderr,
            )
            # No-fills close at once (nothing to wait for); the rest stay open.
            if read >= counts["messages"]:
                print(file=sys.stderr)
                break
            if time.monotonic() - started > 3_600:
                raise RuntimeError("the worker did not read everything within an hour")
            time.sleep(1.0)
        return {
            "open_opportunities": open_now,
            "open_events": _scrape(url, "mediation_worker_open_events"),
            "rss_mib": current_rss_mib(worker.pid),
            "peak_rss_mib": peak_rss_mib(worker.pid),
            "seconds": time.monotonic() - started,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--workers",
        default="1",
        help="run one worker process over all partitions (1; kept for compatibility: a "
        "process runs one Bytewax worker, scale out with --processes)",
    )
    parser.add_argument(
        "--lateness-ms",
        type=int,
        default=LATENESS_MS,
        help="the workers' allowed lateness (MEDIATION_ALLOWED_LATENESS_MS)",
    )
    parser.add_argument(
        "--processes",
        default="",
        help="comma-separated process counts to run (--member i/N each)",
    )
    parser.add_argument(
        "--open-state",
        type=int,
        default=0,
        metavar="N",
        help="instead: pre-fill N opportunities (and their events) with a one-hour window "
        "and report the RSS of one worker holding them all open",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample each worker run with py-spy (GIL-holding threads only) into DIR "
        "and print the hottest frames; the figures of a profiled run are slower",
    )
    args = parser.parse_args()
    if any(w != 1 for w in _counts(args.workers)):
        parser.error("--workers: only 1 (a process runs one Bytewax worker; use --processes N)")
    if args.open_state:
        return _open_state_main(args.open_state)
    base = Settings.from_env()

    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        bootstrap, broker = stack.enter_context(private_broker(scratch))
        prefix = f"wbench{uuid.uuid4().hex[:6]}."
        settings = replace(base, kafka_bootstrap_servers=bootstrap, topic_prefix=prefix)
        ensure_topics(bootstrap, settings.topics.all(), partitions=PARTITIONS)

        t0 = time.monotonic()
        counts = _prefill(bootstrap, prefix, args.events)
        prefill_s = time.monotonic() - t0
        print(f"prefilled {counts} in {prefill_s:.1f}s", file=sys.stderr)

        results: dict[str, dict[str, float]] = {}
        with fresh_database(base.database_url) as url:
            results["raw"] = _run_raw(bootstrap, prefix, counts["messages"], url)
        runs = [(f"worker-w{w}", 1) for w in _counts(args.workers)]
        runs += [(f"worker-p{p}", p) for p in _counts(args.processes)]
        for name, processes in runs:
            with fresh_database(base.database_url) as url:
                env = _worker_env(
                    url,
                    bootstrap,
                    prefix,
                    MEDIATION_ALLOWED_LATENESS_MS=str(args.lateness_ms),
                    MEDIATION_DEFAULT_CLOSURE_WINDOW_MS=str(WINDOW_MS),
                    MEDIATION_DEFAULT_GRACE_MS=str(GRACE_MS),
                )
                results[name] = _run_worker(
                    env,
                    name,
                    _worker_commands(processes),
                    counts,
                    url,
                    scratch,
                    args.profile / f"{name}.collapsed" if args.profile else None,
                )
                print(f"{name}: {results[name]}", file=sys.stderr)
        broker_rss = peak_rss_mib(broker.pid)

    for figures in results.values():
        figures["messages_per_s"] = counts["messages"] / figures["seconds"]
        figures["events_per_s"] = counts["events"] / figures["seconds"]
        if "worker_cpu_s" in figures:
            figures["cpu_per_message_us"] = figures["worker_cpu_s"] / counts["messages"] * 1e6
    one = results.get("worker-w1")
    for name, figures in results.items():
        if one is not None and name.startswith("worker-p"):
            figures["cpu_per_message_vs_w1"] = figures["worker_cpu_s"] / one["worker_cpu_s"]
            figures["throughput_vs_w1"] = figures["messages_per_s"] / one["messages_per_s"]
    raw_rate = results["raw"]["messages_per_s"]
    ratios = {
        name: figures["messages_per_s"] / raw_rate
        for name, figures in results.items()
        if name != "raw"
    }
    print(
        json.dumps(
            {
                "bench": "worker",
                "machine": machine(),
                "counts": counts,
                "prefill_s": prefill_s,
                "results": results,
                "ratios_vs_raw": ratios,
                "broker_peak_rss_mib": broker_rss,
            }
        )
    )
    print(
        render_table(
            f"worker, {counts['events']:,} events + {counts['opportunities']:,} opportunities "
            f"({counts['messages']:,} messages incl. resends), {PARTITIONS} partitions",
            ["run", "seconds", "messages/s", "events/s", "vs raw", "CPU us/msg", "peak RSS MiB"],
            [
                [
                    name,
                    round(f["seconds"], 1),
                    round(f["messages_per_s"]),
                    round(f["events_per_s"]),
                    f"{ratios.get(name, 1.0):.2f}",
                    round(f.get("cpu_per_message_us", 0.0), 1),
                    round(f["peak_rss_mib"]),
                ]
                for name, f in results.items()
            ],
        ),
        file=sys.stderr,
    )
    return 0


def _open_state_main(opportunities: int) -> int:
    base = Settings.from_env()
    # This traffic has ~1.76 events per opportunity and 91.5% fills (which
    # stay open; no-fills close at once): so many events leave about
    # ``opportunities`` open.
    events_wanted = int(opportunities * 1.94)
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        bootstrap, _broker = stack.enter_context(private_broker(scratch))
        prefix = f"wbench{uuid.uuid4().hex[:6]}."
        settings = replace(base, kafka_bootstrap_servers=bootstrap, topic_prefix=prefix)
        ensure_topics(bootstrap, settings.topics.all(), partitions=PARTITIONS)
        counts = _prefill(bootstrap, prefix, events_wanted, window_ms=3_600_000)
        print(f"prefilled {counts}", file=sys.stderr)
        url = stack.enter_context(fresh_database(base.database_url))
        env = _worker_env(url, bootstrap, prefix)
        figures = _open_state(env, counts, scratch / "worker-open.log")
    print(json.dumps({"bench": "worker-open-state", "machine": machine(), **figures}))
    print(
        render_table(
            "one worker holding the pre-filled opportunities open (no-fills close at once)",
            ["open opportunities", "open events", "RSS MiB", "peak RSS MiB", "seconds"],
            [
                [
                    round(figures["open_opportunities"]),
                    round(figures["open_events"]),
                    round(figures["rss_mib"]),
                    round(figures["peak_rss_mib"]),
                    round(figures["seconds"], 1),
                ]
            ],
        ),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
