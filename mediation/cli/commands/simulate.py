"""``mediation simulate``: simulated SDK traffic, or a whole-stack load profile with a report."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mediation.cli.common import settings
from mediation.cli.errors import UsageError

if TYPE_CHECKING:
    from mediation.sim.simulate import SimulationReport


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--app-key", help="an app write key (needed without --profile)")
    parser.add_argument(
        "--rate",
        type=float,
        help="sync requests per second (default 50; with --profile: its base rate, the burst "
        "scaled alike)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        help="seconds of traffic (default 20; peak and 10x: 120; soak: 600)",
    )
    parser.add_argument(
        "--profile",
        choices=["peak", "10x", "soak"],
        help="run the whole local stack under the seed's peak (or ten times it, or its peak "
        "held with a memory check), verify closure end to end, and write a report with charts",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="report folder (default <data dir>/results/<time>-<profile>)",
    )
    parser.add_argument("--seed", type=int, default=7)


def _progress(report: SimulationReport, elapsed_s: float) -> None:
    if report.requests_sent % 25 == 0:
        sys.stderr.write(
            f"\r{elapsed_s:6.1f}s  requests {report.requests_sent:7,} ok {report.requests_ok:7,}  "
            f"events ACKed {report.events_accepted:8,}  "
            f"batches ok {report.batches_ok:6,}/{report.batches_sent:,}"
        )
        sys.stderr.flush()


def _run_profile(args: argparse.Namespace) -> int:
    from mediation.ops.peak import PROFILES, run_profile

    profile = PROFILES[args.profile]
    if args.rate is not None:
        profile = profile.at_rate(args.rate)
    folder, passed = run_profile(settings(), profile, args.duration, args.results)
    print(f"\n{(folder / 'report.md').read_text()}")
    print(f"report: {folder / 'report.md'} ({'PASSED' if passed else 'FAILED'})")
    return 0 if passed else 1


def run(args: argparse.Namespace) -> int:
    from collections import Counter

    from mediation.sim.simulate import SimulationConfig, run_simulation
    from mediation.sim.summary import percentile

    if args.profile:
        return _run_profile(args)
    if not args.app_key:
        raise UsageError("--app-key is required without --profile")
    report = asyncio.run(
        run_simulation(
            SimulationConfig(
                base_url=args.url,
                app_key=args.app_key,
                rate_rps=args.rate if args.rate is not None else 50.0,
                duration_s=args.duration or 20.0,
                seed=args.seed,
            ),
            progress=_progress,
        )
    )
    sys.stderr.write("\n")
    latencies = report.request_latency_ms
    outcomes = Counter(e.outcome for e in report.expectations.values())
    print(
        f"requests {report.requests_sent:,} (ok {report.requests_ok:,}, errors "
        f"{dict(report.request_errors) or 'none'}); events sent {report.events_sent:,}, "
        f"accepted {report.events_accepted:,}, rejected {dict(report.events_rejected) or 'none'}"
    )
    if latencies:
        print(
            f"sync latency p50 {percentile(latencies, 50):.1f} ms, p95 "
            f"{percentile(latencies, 95):.1f} ms, p99 {percentile(latencies, 99):.1f} ms; "
            f"event batches p95 {percentile(report.batch_latency_ms, 95):.1f} ms"
        )
    print(f"event ACK success {100 * report.ack_ratio:.3f}% of {report.batches_sent:,} batches")
    print(
        f"the archive should hold {len(report.expectations):,} records: "
        + ", ".join(f"{outcome} {n:,}" for outcome, n in sorted(outcomes.items()))
    )
    return 0
