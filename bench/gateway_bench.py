"""Gateway throughput and latency against same-run baselines.

(One module of about 670 lines on purpose: a benchmark read top to bottom,
its runs, baselines and report in one place, with stable flags and JSON keys.)

Measures, with ``wrk`` on the same machine (interleaved runs, medians):

- ``bare``: a bare Starlette POST endpoint (uvicorn, uvloop, httptools, one process);
- ``produce1``: the same endpoint producing one message and awaiting confirmation;
- ``requests``: the gateway's ``POST /v1/requests`` (auth, rate limit, validation,
  waterfall choice, ULID, produce + confirm);
- ``produce50``: a bare endpoint producing 50 messages, awaiting all confirmations;
- ``events50``: the gateway's ``POST /v1/events`` with 50-event batches (full validation,
  broker-confirmed);

then latency at fixed offered rates with ``hey`` to ``/v1/requests``: ``--rate``
requests/s, and ``--rate-share`` of the same run's bare throughput (the 5,000 req/s
target was set where the bare endpoint does ~20,000; the share keeps the load
comparable on slower machines), and each server's peak RSS. Prints one JSON line
with every figure and the machine, then a table. Needs the local services (``mediation dev up``).

``--servers`` starts one gateway per HTTP server (``mediation api --server``),
all in the same run, interleaved: the two SDK routes and the fixed-rate
latency are measured on each (``servers``). ``requests_vs_uvicorn`` and
``events50_vs_uvicorn`` compare the ``candidate`` (the first server listed
that is not uvicorn) with uvicorn, and ``fixed_rate_candidate`` is its
latency at ``--rate``. The top-level figures (``median``, ``ratios``,
``fixed_rate_requests``, ``peak_rss``) are those of ``server``, the one
``mediation api`` starts by default.

    python bench/gateway_bench.py --runs 3 --duration 8

``--replay-load N`` measures something else instead: ``/v1/requests`` latency
(``hey`` at ``--replay-load-rate``) with the gateway idle, then while ``N``
admin clients each keep one maximal replay (1970 to 9999) in flight, honouring
``Retry-After`` up to a second; interleaved runs, medians, and the gateway's
largest resident memory in each phase. No job runner runs: what is measured
is what replay requests cost the gateway itself.

    python bench/gateway_bench.py --replay-load 5 --runs 3 --rate-duration 10
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import current_rss_mib, machine, median, peak_rss_mib, private_broker, py_spy
from mediation.cli.commands.api import DEFAULT_SERVER, SERVERS
from mediation.rules.ulid import encode_ulid
from mediation.settings import Settings
from mediation.sim.processes import ChildProcess, free_port, mediation_command, running
from mediation.sim.seed import demo_config, new_app_key, seed_app
from mediation.text_table import render_table
from mediation.topics import ensure_topics
from storage.db import connect
from storage.migrate import migrate

LUA = Path(__file__).resolve().parent / "post.lua"
ADMIN_TOKEN = "bench-admin-token-0123456789"
# A range over every representable year: the request that used to be sized
# inside the gateway (a catalog lookup per day, ~2.9 million days).
MAXIMAL_REPLAY = orjson.dumps(
    {"from": "1970-01-01T00:00:00Z", "to": "9999-12-31T00:00:00Z", "mode": "recompute"}
)


def _wrk(
    url: str, body_file: Path, headers: dict[str, str], duration_s: int, connections: int
) -> dict[str, float]:
    env = dict(
        os.environ,
        BENCH_BODY_FILE=str(body_file),
        BENCH_HEADERS="|".join(f"{k}: {v}" for k, v in headers.items()),
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "-s", str(LUA), url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    seconds = figures["duration_us"] / 1e6
    return {
        "rps": figures["requests"] / seconds,
        "p50_ms": figures["p50_us"] / 1000,
        "p95_ms": figures["p95_us"] / 1000,
        "p99_ms": figures["p99_us"] / 1000,
        "non_2xx": figures["non_2xx"],
        "errors": figures["connect_errors"] + figures["timeouts"],
    }


def _hey(
    url: str, body_file: Path, headers: dict[str, str], rate: int, duration_s: int
) -> dict[str, float]:
    workers = 50
    argv = [
        "hey",
        "-z",
        f"{duration_s}s",
        "-c",
        str(workers),
        "-q",
        str(rate / workers),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-D",
        str(body_file),
        "-o",
        "csv",
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    latencies = sorted(float(r["response-time"]) * 1000 for r in rows)
    ok = sum(1 for r in rows if r["status-code"] == "200")

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] if latencies else 0.0
        )

    return {
        "offered_rps": rate,
        "achieved_rps": len(rows) / duration_s,
        "ok_ratio": ok / max(1, len(rows)),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
    }


def _serving_pid(gateway: ChildProcess, server: str) -> int:
    """The process that serves requests: uvicorn's only process, or Granian's one worker."""
    if server == "uvicorn":
        return gateway.pid
    children = Path(f"/proc/{gateway.pid}/task/{gateway.pid}/children").read_text().split()
    workers = [
        int(pid)
        for pid in children
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    return workers[0]


def _server_list(text: str) -> list[str]:
    servers = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(servers) - set(SERVERS))
    if unknown or not servers:
        raise argparse.ArgumentTypeError(f"servers are some of {', '.join(SERVERS)}")
    return list(dict.fromkeys(servers))


def _profiled(load: Callable[[], object], pid: int, out: Path) -> None:
    """Run ``load`` while py-spy samples ``pid``; print the hottest frames."""
    with py_spy(pid, out):
        load()


class _ReplayLoad:
    """``clients`` threads, each keeping one maximal replay request in flight until stopped.

    A refused request (429) is retried after its ``Retry-After``, at most a
    second, as a polite but insistent client would. The resident memory of
    ``pid`` is sampled meanwhile.
    """

    def __init__(self, gateway_url: str, clients: int, pid: int):
        self._url, self._clients, self._pid = f"{gateway_url}/v1/replay", clients, pid
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.statuses: Counter[int] = Counter()
        self.replay_ids: list[int] = []
        self.max_rss_mib = 0.0

    def __enter__(self) -> _ReplayLoad:
        self._threads = [threading.Thread(target=self._client) for _ in range(self._clients)]
        self._threads.append(threading.Thread(target=self._sample))
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:  # requests in flight finish (the gateway's work is done)
            thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.max_rss_mib = max(self.max_rss_mib, current_rss_mib(self._pid))

    def _client(self) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
        while not self._stop.is_set():
            request = urllib.request.Request(self._url, MAXIMAL_REPLAY, headers, method="POST")
            retry_s = 0.0
            try:
                with urllib.request.urlopen(request, timeout=600) as response:
                    status, body = response.status, response.read()
            except urllib.error.HTTPError as refused:
                status, body = refused.code, refused.read()
                retry_s = min(1.0, float(refused.headers.get("Retry-After") or 1))
            with self._lock:
                self.statuses[status] += 1
                if status in (200, 202):
                    self.replay_ids.append(int(orjson.loads(body)["replay_id"]))
            if retry_s:
                self._stop.wait(retry_s)


def _idle_rss(pid: int, load: Callable[[], dict[str, float]]) -> tuple[dict[str, float], float]:
    """``load()``'s figures and the largest resident memory of ``pid`` while it ran."""
    peak = [current_rss_mib(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak.append(current_rss_mib(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        figures = load()
    finally:
        stop.set()
        sampler.join()
    return figures, max(peak)


def _replay_load(
    args: argparse.Namespace,
    gateway_url: str,
    request_file: Path,
    auth: dict[str, str],
    pid: int,
    database_url: str,
) -> dict[str, object]:
    """``/v1/requests`` at a fixed rate, idle and during ``args.replay_load`` maximal replays."""
    url = f"{gateway_url}/v1/requests"

    def sdk_load() -> dict[str, float]:
        return _hey(url, request_file, auth, args.replay_load_rate, args.rate_duration)

    idle: list[dict[str, float]] = []
    loaded: list[dict[str, float]] = []
    idle_rss: list[float] = []
    loaded_rss: list[float] = []
    statuses: Counter[int] = Counter()
    replay_ids: list[int] = []
    sdk_load()  # warm up
    try:
        for _run in range(args.runs):
            figures, rss = _idle_rss(pid, sdk_load)
            idle.append(figures)
            idle_rss.append(rss)
            with _ReplayLoad(gateway_url, args.replay_load, pid) as replays:
                time.sleep(1)  # the replays are under way before the SDK load starts
                loaded.append(sdk_load())
            loaded_rss.append(replays.max_rss_mib)
            statuses.update(replays.statuses)
            replay_ids.extend(replays.replay_ids)
            print(
                f"run {_run + 1}: p95 idle {idle[-1]['p95_ms']:.1f} ms, during replays "
                f"{loaded[-1]['p95_ms']:.1f} ms; "
                f"gateway {rss:.0f} -> {replays.max_rss_mib:.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
    finally:
        with connect(database_url, autocommit=True) as conn:  # leave no bench jobs queued
            conn.execute("DELETE FROM replay_records WHERE id = ANY(%s)", (replay_ids,))

    def medians(runs: list[dict[str, float]]) -> dict[str, float]:
        return {
            metric: median([run[metric] for run in runs])
            for metric in ("achieved_rps", "ok_ratio", "p50_ms", "p95_ms", "p99_ms")
        }

    idle_median, loaded_median = medians(idle), medians(loaded)
    return {
        "replay_clients": args.replay_load,
        "offered_rps": args.replay_load_rate,
        "runs": args.runs,
        "duration_s": args.rate_duration,
        "idle": idle_median,
        "during_replays": loaded_median,
        "p95_during_vs_idle": loaded_median["p95_ms"] / max(idle_median["p95_ms"], 1e-9),
        "replay_statuses": {str(status): n for status, n in sorted(statuses.items())},
        "gateway_rss_mib": {"idle": max(idle_rss), "during_replays": max(loaded_rss)},
        "per_run": {"idle": idle, "during_replays": loaded},
    }


def _print_replay_load(result: dict[str, object]) -> None:
    phases = [("idle", result["idle"]), ("during replays", result["during_replays"])]
    rss = result["gateway_rss_mib"]
    assert isinstance(rss, dict)
    print(
        render_table(
            f"POST /v1/requests at {result['offered_rps']} req/s (hey), idle and during "
            f"{result['replay_clients']} maximal replays; medians of {result['runs']} runs",
            ["phase", "achieved req/s", "ok ratio", "p50 ms", "p95 ms", "p99 ms", "gateway MiB"],
            [
                [name, f["achieved_rps"], f"{f['ok_ratio']:.4f}", f["p50_ms"], f["p95_ms"],
                 f["p99_ms"], rss["idle" if name == "idle" else "during_replays"]]
                for name, f in phases
                if isinstance(f, dict)
            ],
        ),
        file=sys.stderr,
    )  # fmt: skip
    print(
        f"p95 during / idle: {result['p95_during_vs_idle']:.2f}; "
        f"replay answers: {result['replay_statuses']}",
        file=sys.stderr,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=5000, help="offered rate for the latency run")
    parser.add_argument(
        "--rate-share",
        type=float,
        default=0.25,
        help="also offer this share of the same run's bare req/s (5,000 against "
        "~20,000 bare), so slower machines are judged at the same load",
    )
    parser.add_argument("--rate-duration", type=int, default=10)
    parser.add_argument(
        "--profile",
        type=Path,
        help="also sample the gateway with py-spy during one more run of each SDK route; "
        "collapsed stacks go to this folder and the top frames are printed",
    )
    parser.add_argument(
        "--replay-load",
        type=int,
        default=0,
        metavar="N",
        help="instead of the usual figures: /v1/requests latency idle and during N concurrent "
        "maximal replay requests (see the module docstring)",
    )
    parser.add_argument(
        "--replay-load-rate", type=int, default=500, help="offered req/s in --replay-load runs"
    )
    parser.add_argument(
        "--servers",
        type=_server_list,
        default=list(SERVERS),
        help="comma-separated HTTP servers to measure the gateway on, in the same run "
        f"(default {','.join(SERVERS)}); {DEFAULT_SERVER} (mediation api's default, or "
        "else the first listed) gives the top-level figures",
    )
    args = parser.parse_args()
    chosen = DEFAULT_SERVER if DEFAULT_SERVER in args.servers else args.servers[0]
    candidate = next((server for server in args.servers if server != "uvicorn"), None)

    with contextlib.ExitStack() as stack:
        broker_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        bootstrap, broker = stack.enter_context(private_broker(broker_dir))
        base = replace(Settings.from_env(), kafka_bootstrap_servers=bootstrap)
        prefix = f"bench{uuid.uuid4().hex[:8]}."
        migrate(base.database_url)
        app_key = new_app_key()
        config = demo_config()
        config["rate_limits"] = {"requests_per_s": 10_000_000, "event_batches_per_s": 10_000_000}
        seed_app(base.database_url, "bench", config, app_key)
        bench_topic = f"{prefix}baseline"
        topics = [
            f"{prefix}opportunities.v1",
            f"{prefix}events.v1",
            f"{prefix}deadletter.v1",
            bench_topic,
        ]
        ensure_topics(base.kafka_bootstrap_servers, topics, partitions=4)

        env = dict(
            os.environ,
            KAFKA_TOPIC_PREFIX=prefix,
            BENCH_TOPIC=bench_topic,
            KAFKA_BOOTSTRAP_SERVERS=base.kafka_bootstrap_servers,
            MEDIATION_LOG_LEVEL="WARNING",
            MEDIATION_ADMIN_TOKEN=ADMIN_TOKEN,
            # High enough that the replay clients meet the queue bound, not the throttle.
            MEDIATION_REPLAY_REQUESTS_PER_S="1000",
            PYTHONPATH=str(Path(__file__).resolve().parent.parent),
        )
        now = int(time.time() * 1000)
        key = encode_ulid(now, os.urandom(10))
        request_body = orjson.dumps(
            {
                "placement_id": "interstitial_main",
                "device_id": "bench-device",
                "ts_ms": now,
                "context": {"country": "US", "os": "ios"},
            }
        )
        events_body = orjson.dumps(
            {
                "sent_at": now,
                "sdk": "bench/1",
                "events": [
                    {
                        "event_id": f"bench-{i}",
                        "opportunity_key": key,
                        "type": "impression" if i % 2 else "loaded",
                        "ts": now,
                        "source_id": "net_alpha",
                        **({"revenue_micros": 1200, "currency": "USD"} if i % 2 else {}),
                        "attrs": {"format": "video", "i": i},
                    }
                    for i in range(50)
                ],
            }
        )

        with tempfile.TemporaryDirectory() as scratch:
            files = {}
            for name, body in (
                ("small", b'{"hello":"world"}'),
                ("request", request_body),
                ("events", events_body),
            ):
                files[name] = Path(scratch) / f"{name}.json"
                files[name].write_bytes(body)
            base_port = free_port()
            gw_ports = {server: free_port() for server in args.servers}
            logs = Path(scratch)
            with contextlib.ExitStack() as servers:
                baseline = servers.enter_context(
                    running(
                        "baseline",
                        [
                            sys.executable,
                            "-m",
                            "uvicorn",
                            "--factory",
                            "bench.baseline_app:create",
                            "--port",
                            str(base_port),
                            "--loop",
                            "uvloop",
                            "--http",
                            "httptools",
                            "--log-level",
                            "warning",
                            "--no-access-log",
                        ],
                        env,
                        logs / "baseline.log",
                    )
                )
                gateways = {
                    server: servers.enter_context(
                        running(
                            f"gateway ({server})",
                            mediation_command(
                                "api", "--port", str(gw_ports[server]), "--server", server
                            ),
                            env,
                            logs / f"gateway-{server}.log",
                        )
                    )
                    for server in args.servers
                }
                for server, gateway in gateways.items():
                    gateway.wait_http(f"http://127.0.0.1:{gw_ports[server]}/readyz")
                baseline.wait_http(f"http://127.0.0.1:{base_port}/healthz")
                baseline_url = f"http://127.0.0.1:{base_port}"
                gateway_urls = {s: f"http://127.0.0.1:{port}" for s, port in gw_ports.items()}
                serving = {server: _serving_pid(gw, server) for server, gw in gateways.items()}
                gateway_url = gateway_urls[chosen]
                auth = {"X-App-Key": app_key}
                if args.replay_load:
                    replay_result = _replay_load(
                        args, gateway_url, files["request"], auth, serving[chosen],
                        base.database_url,
                    )  # fmt: skip
                    print(json.dumps({"bench": "gateway_replay_load", "machine": machine(),
                                      "server": chosen, **replay_result}))  # fmt: skip
                    _print_replay_load(replay_result)
                    return 0
                # name -> (url, body, headers, items per request); the SDK routes per server.
                targets = {
                    "bare": (f"{baseline_url}/bare", files["small"], {}, 1),
                    "produce1": (f"{baseline_url}/produce1", files["small"], {}, 1),
                    "requests": (f"{gateway_url}/v1/requests", files["request"], auth, 1),
                    "produce50": (f"{baseline_url}/produce50", files["events"], {}, 50),
                    "events50": (f"{gateway_url}/v1/events", files["events"], auth, 50),
                }
                for server in args.servers:
                    if server != chosen:
                        url = gateway_urls[server]
                        targets[f"{server}:requests"] = (
                            f"{url}/v1/requests", files["request"], auth, 1)  # fmt: skip
                        targets[f"{server}:events50"] = (
                            f"{url}/v1/events", files["events"], auth, 50)  # fmt: skip
                for url, body_file, headers, _n in targets.values():  # warm up
                    _wrk(url, body_file, headers, 2, args.connections)
                samples: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
                for _run in range(args.runs):
                    for name, (url, body_file, headers, _n) in targets.items():
                        samples[name].append(
                            _wrk(url, body_file, headers, args.duration, args.connections)
                        )
                if args.profile is not None:
                    for name in ("requests", "events50"):
                        url, body_file, headers, _n = targets[name]
                        _profiled(
                            functools.partial(
                                _wrk, url, body_file, headers, args.duration, args.connections
                            ),
                            serving[chosen],
                            args.profile / f"{name}.collapsed",
                        )
                bare_rps = median([r["rps"] for r in samples["bare"]])
                rates = (args.rate, round(bare_rps * args.rate_share))
                fixed_by_server = {
                    server: [
                        _hey(
                            f"{gateway_urls[server]}/v1/requests",
                            files["request"],
                            auth,
                            rate,
                            args.rate_duration,
                        )
                        for rate in rates
                    ]
                    for server in args.servers
                }
                fixed = fixed_by_server[chosen]
                rss = {
                    "gateway_mib": peak_rss_mib(serving[chosen]),
                    "baseline_mib": peak_rss_mib(baseline.pid),
                    "broker_mib": peak_rss_mib(broker.pid),
                }
                gateway_rss = {server: peak_rss_mib(pid) for server, pid in serving.items()}

        figures: dict[str, dict[str, float]] = {}
        for name, runs in samples.items():
            per_item = targets[name][3]
            figures[name] = {
                metric: median([r[metric] for r in runs])
                for metric in ("rps", "p50_ms", "p95_ms", "p99_ms", "non_2xx", "errors")
            }
            figures[name]["items_per_s"] = figures[name]["rps"] * per_item
        per_server = {
            server: {
                route: figures[route if server == chosen else f"{server}:{route}"]
                for route in ("requests", "events50")
            }
            for server in args.servers
        }
        ratios = {
            "requests_vs_bare": figures["requests"]["rps"] / figures["bare"]["rps"],
            "requests_vs_produce1": figures["requests"]["rps"] / figures["produce1"]["rps"],
            "events50_vs_produce50": figures["events50"]["rps"] / figures["produce50"]["rps"],
        }
        result: dict[str, object] = {
            "bench": "gateway",
            "machine": machine(),
            "runs": args.runs,
            "duration_s": args.duration,
            "connections": args.connections,
            "median": {name: f for name, f in figures.items() if ":" not in name},
            "ratios": ratios,
            "fixed_rate_requests": fixed,
            "peak_rss": rss,
            "server": chosen,
            "servers": {
                server: {
                    **per_server[server],
                    "fixed_rate_requests": fixed_by_server[server],
                    "peak_rss_mib": gateway_rss[server],
                }
                for server in args.servers
            },
        }
        if candidate is not None:
            at_rate = fixed_by_server[candidate][0]
            # The candidate at the --rate offered req/s (the target: p99 <= 25 ms at 5,000).
            result["candidate"] = candidate
            result["fixed_rate_candidate"] = {
                "server": candidate,
                **{k: at_rate[k] for k in ("offered_rps", "achieved_rps", "p95_ms", "p99_ms")},
            }
            if "uvicorn" in per_server:
                for route in ("requests", "events50"):
                    result[f"{route}_vs_uvicorn"] = (
                        per_server[candidate][route]["rps"] / per_server["uvicorn"][route]["rps"]
                    )
        print(json.dumps(result))
        rows = [
            [
                name if ":" in name or name not in ("requests", "events50") else f"{chosen}:{name}",
                f["rps"],
                f["items_per_s"],
                f["p50_ms"],
                f["p95_ms"],
                f["p99_ms"],
                int(f["non_2xx"]),
            ]
            for name, f in figures.items()
        ]
        print(
            render_table(
                f"gateway, medians of {args.runs} runs x {args.duration}s, "
                f"{args.connections} connections",
                ["target", "req/s", "items/s", "p50 ms", "p95 ms", "p99 ms", "non-2xx"],
                rows,
            ),
            file=sys.stderr,
        )
        shown = dict(ratios)
        for key in ("requests_vs_uvicorn", "events50_vs_uvicorn"):
            if key in result:
                shown[f"{key} ({candidate})"] = float(result[key])  # type: ignore[arg-type]
        print(
            render_table("ratios", ["ratio", "value"], [[k, f"{v:.2f}"] for k, v in shown.items()]),
            file=sys.stderr,
        )
        print(
            render_table(
                "POST /v1/requests at a fixed offered rate (hey, 50 workers)",
                ["server", "offered req/s", "achieved req/s", "ok ratio", "p50 ms", "p95 ms",
                 "p99 ms"],
                [
                    [server, run["offered_rps"], run["achieved_rps"], f"{run['ok_ratio']:.4f}",
                     run["p50_ms"], run["p95_ms"], run["p99_ms"]]
                    for server, runs in fixed_by_server.items()
                    for run in runs
                ],
            ),
            file=sys.stderr,
        )  # fmt: skip
        print(
            f"peak RSS: gateway ({chosen}) {rss['gateway_mib']:.0f} MiB, "
            f"baseline {rss['baseline_mib']:.0f} MiB, broker {rss['broker_mib']:.0f} MiB",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
