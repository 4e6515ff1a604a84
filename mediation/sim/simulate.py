"""A simulated SDK fleet, shaped like the seed's traffic model.

Each simulated opportunity is one device asking ``POST /v1/requests`` and
then reporting what happened in one or two event batches, with what real
SDKs do to us: clock skew (``ts`` and ``sent_at`` from a wrong clock),
batches split so events arrive out of order, resends of whole batches
(duplicates), an occasional event with the same id but other content, a
few malformed events and bodies, and events for opportunities that never
existed (orphans).

The simulator remembers what it expects each archive record to say (the
outcome, credited source and revenue of the events it got ACKed), so the
demo and the end-to-end test can check the pipeline against it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from mediation.clock import now_ms as _now_ms
from mediation.rules.ulid import encode_ulid

__all__ = [
    "Expectation",
    "SimulationConfig",
    "SimulationReport",
    "merge_reports",
    "run_simulation",
    "run_simulation_processes",
    "scheduled_rate",
]

# Scenario -> (weight, event types in order). Weighted so that, with the
# demo config's no-fill share, requests average about 1.8 events.
_SCENARIOS: dict[str, tuple[float, tuple[str, ...]]] = {
    "silent": (0.08, ()),
    "loaded_only": (0.12, ("loaded",)),
    "impressed": (0.30, ("loaded", "impression")),
    "impressed_closed": (0.18, ("loaded", "impression", "closed")),
    "clicked": (0.12, ("loaded", "impression", "click", "closed")),
    "rewarded": (0.08, ("loaded", "impression", "reward", "closed")),
    "fallback": (0.07, ("load_failed", "loaded", "impression")),
    "all_failed": (0.05, ("load_failed*",)),
}
_OUTCOME_OF = {
    "silent": "no_fill",
    "loaded_only": "loaded",
    "impressed": "impressed",
    "impressed_closed": "impressed",
    "clicked": "clicked",
    "rewarded": "impressed",
    "fallback": "impressed",
    "all_failed": "load_failed",
}


@dataclass(frozen=True)
class SimulationConfig:
    base_url: str
    app_key: str
    rate_rps: float = 50.0
    duration_s: float = 20.0
    seed: int = 7
    skewed_device_share: float = 0.2
    max_skew_ms: int = 90_000
    resend_share: float = 0.05
    split_share: float = 0.3
    malformed_share: float = 0.02
    conflict_share: float = 0.005
    orphan_share: float = 0.01
    invalid_body_count: int = 2
    max_in_flight: int = 400
    # (from second, requests per second) steps; empty: rate_rps throughout.
    rate_schedule: tuple[tuple[float, float], ...] = ()
    # The served config's closure window and grace: a batch answered later
    # than the window after the sync answer, or slower than the grace, makes
    # its opportunity's expectation "delayed".
    closure_window_ms: int | None = None
    grace_ms: int | None = None

    def rate_at(self, elapsed_s: float) -> float:
        return scheduled_rate(self.rate_schedule, elapsed_s, self.rate_rps)


def scheduled_rate(
    schedule: tuple[tuple[float, float], ...], elapsed_s: float, default: float
) -> float:
    """The rate of the last ``(from second, rate)`` step reached at ``elapsed_s``."""
    rate = default
    for from_s, rps in schedule:
        if elapsed_s >= from_s:
            rate = rps
    return rate


@dataclass
class Expectation:
    """What the archive record of one opportunity should say."""

    outcome: str
    credited_source_id: str | None
    revenue_micros: int
    rewarded: bool
    event_ids: tuple[str, ...]
    # A batch took longer than the grace to be answered, or left after the
    # window (an overloaded simulator queues it before sending): its events'
    # server time moves by that delay, so the rules may rightly exclude some
    # and the outcome is not compared. Its events must still be stored
    # exactly once.
    delayed: bool = False


@dataclass
class SimulationReport:
    started_at_ms: int = 0
    finished_at_ms: int = 0
    requests_sent: int = 0
    requests_ok: int = 0
    fills: int = 0
    no_fills: int = 0
    request_errors: Counter[str] = field(default_factory=Counter)
    batches_sent: int = 0
    batch_errors: Counter[str] = field(default_factory=Counter)
    # Bodies that are not JSON, sent on purpose: their answers, by status. They
    # are not batches an SDK would send, so ACK success leaves them out.
    invalid_bodies: Counter[str] = field(default_factory=Counter)
    events_sent: int = 0
    events_accepted: int = 0
    events_rejected: Counter[str] = field(default_factory=Counter)
    resent_batches: int = 0
    conflicts_sent: int = 0
    orphans_sent: int = 0
    abandoned_opportunities: int = 0
    request_latency_ms: list[float] = field(default_factory=list)
    batch_latency_ms: list[float] = field(default_factory=list)
    expectations: dict[str, Expectation] = field(default_factory=dict)
    orphan_event_ids: set[str] = field(default_factory=set)

    @property
    def batches_ok(self) -> int:
        return self.batches_sent - sum(self.batch_errors.values())

    @property
    def ack_ratio(self) -> float:
        return self.batches_ok / self.batches_sent if self.batches_sent else 1.0


class _Fleet:
    def __init__(self, config: SimulationConfig, client: httpx.AsyncClient):
        self.config = config
        self.client = client
        self.rng = random.Random(config.seed)
        self.report = SimulationReport()
        self.headers = {"X-App-Key": config.app_key, "Content-Type": "application/json"}
        self.counter = 0
        # Event ids must be unique per app across runs, whatever the seed.
        self.run_tag = os.urandom(4).hex()

    def _event_id(self) -> str:
        self.counter += 1
        return f"ev-{self.run_tag}-{self.counter}"

    async def _post_batch(
        self, events: list[dict[str, Any]], skew_ms: int
    ) -> dict[str, Any] | None:
        """Send one batch; on 503 resend it after Retry-After (an SDK's retry)."""
        for _attempt in range(5):
            body = orjson.dumps(
                {"sent_at": _now_ms() + skew_ms, "sdk": "sim/1.0", "events": events}
            )
            started = time.perf_counter()
            self.report.batches_sent += 1
            self.report.events_sent += len(events)
            try:
                response = await self.client.post("/v1/events", content=body, headers=self.headers)
            except httpx.HTTPError as exc:
                self.report.batch_errors[type(exc).__name__] += 1
                await asyncio.sleep(0.5)
                continue
            self.report.batch_latency_ms.append((time.perf_counter() - started) * 1000)
            if response.status_code == 200:
                result: dict[str, Any] = response.json()
                self.report.events_accepted += result["accepted"]
                for item in result["rejected"]:
                    self.report.events_rejected[item["code"]] += 1
                return result
            self.report.batch_errors[str(response.status_code)] += 1
            if response.status_code != 503:
                return None
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        return None

    async def opportunity(self) -> None:
        config, rng = self.config, self.rng
        skew_ms = (
            rng.randint(-config.max_skew_ms, config.max_skew_ms)
            if (rng.random() < config.skewed_device_share)
            else 0
        )
        placement = rng.choice(
            ["interstitial_main", "interstitial_main", "rewarded_main", "banner_home"]
        )
        context = {
            "country": rng.choice(["US", "US", "CA", "GB", "DE", "BR", "IN"]),
            "os": rng.choice(["ios", "android"]),
        }
        started = time.perf_counter()
        self.report.requests_sent += 1
        try:
            response = await self.client.post(
                "/v1/requests",
                headers=self.headers,
                content=orjson.dumps(
                    {
                        "placement_id": placement,
                        "device_id": f"dev-{rng.getrandbits(48):x}",
                        "ts_ms": _now_ms() + skew_ms,
                        "context": context,
                    }
                ),
            )
        except httpx.HTTPError as exc:
            self.report.request_errors[type(exc).__name__] += 1
            return
        self.report.request_latency_ms.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            self.report.request_errors[str(response.status_code)] += 1
            return
        self.report.requests_ok += 1
        answered_at = time.monotonic()
        decision = response.json()
        key = decision["opportunity_key"]
        waterfall = [entry["source_id"] for entry in decision["delivery"]["waterfall"]]
        if not waterfall:
            self.report.no_fills += 1
            self.report.expectations[key] = Expectation("no_fill", None, 0, False, ())
            return
        self.report.fills += 1
        await self._report_events(key, waterfall, skew_ms, answered_at)

    def _scenario_events(
        self, key: str, waterfall: list[str], skew_ms: int
    ) -> tuple[str, list[dict[str, Any]]]:
        rng = self.rng
        names = list(_SCENARIOS)
        name = rng.choices(names, weights=[_SCENARIOS[n][0] for n in names])[0]
        types = list(_SCENARIOS[name][1])
        if name == "fallback" and len(waterfall) < 2:
            name, types = "impressed", ["loaded", "impression"]
        events: list[dict[str, Any]] = []
        t = _now_ms() + skew_ms
        source_index = 0
        for event_type in types:
            if event_type == "load_failed*":
                for source in waterfall:
                    t += rng.randint(20, 200)
                    events.append(
                        {
                            "event_id": self._event_id(),
                            "opportunity_key": key,
                            "type": "load_failed",
                            "ts": t,
                            "source_id": source,
                        }
                    )
                continue
            t += rng.randint(20, 400)
            event: dict[str, Any] = {
                "event_id": self._event_id(),
                "opportunity_key": key,
                "type": event_type,
                "ts": t,
                "source_id": waterfall[source_index],
            }
            if event_type == "load_failed":
                source_index = min(source_index + 1, len(waterfall) - 1)
            if event_type == "impression":
                event["revenue_micros"] = rng.randint(500, 20_000)
                event["currency"] = "USD"
                event["attrs"] = {"format": "video" if rng.random() < 0.5 else "static"}
            events.append(event)
        return name, events

    def _delayed(self, answered_at: float, posted_at: float) -> bool:
        """Whether a batch just ACKed was slow enough to move its events past a boundary."""
        now, config = time.monotonic(), self.config
        # Half a second of margin: the boundaries run on the gateway's clock.
        too_late = config.closure_window_ms and (now - answered_at) * 1000 > (
            config.closure_window_ms - 500
        )
        too_slow = config.grace_ms and (now - posted_at) * 1000 > config.grace_ms - 500
        return bool(too_late or too_slow)

    async def _report_events(
        self, key: str, waterfall: list[str], skew_ms: int, answered_at: float
    ) -> None:
        config, rng = self.config, self.rng
        name, events = self._scenario_events(key, waterfall, skew_ms)
        impressions = [e for e in events if e["type"] == "impression"]
        loaded = [e for e in events if e["type"] == "loaded"]
        credited = (impressions or loaded or [{"source_id": None}])[0]["source_id"]
        self.report.expectations[key] = Expectation(
            _OUTCOME_OF[name],
            credited,
            sum(e.get("revenue_micros", 0) for e in impressions),
            name == "rewarded",
            tuple(e["event_id"] for e in events),
        )
        if not events:
            return
        await asyncio.sleep(rng.uniform(0.05, 0.8))
        # Split: later events first, earlier ones in a second batch (reordering).
        if len(events) > 1 and rng.random() < config.split_share:
            cut = rng.randint(1, len(events) - 1)
            batches = [events[cut:], events[:cut]]
        else:
            batches = [events]
        for batch in batches:
            extra: list[dict[str, Any]] = []
            if rng.random() < config.malformed_share:
                extra.append(
                    rng.choice(
                        [
                            {
                                "event_id": "bad id with spaces",
                                "opportunity_key": key,
                                "type": "loaded",
                                "ts": batch[0]["ts"],
                            },
                            {
                                "event_id": self._event_id(),
                                "opportunity_key": "not-a-ulid",
                                "type": "loaded",
                                "ts": batch[0]["ts"],
                            },
                            {
                                "event_id": self._event_id(),
                                "opportunity_key": key,
                                "type": "exploded",
                                "ts": batch[0]["ts"],
                            },
                        ]
                    )
                )
            if rng.random() < config.orphan_share:
                orphan_key = encode_ulid(_now_ms(), os.urandom(10))
                orphan = {
                    "event_id": self._event_id(),
                    "opportunity_key": orphan_key,
                    "type": "impression",
                    "ts": batch[0]["ts"],
                    "source_id": "net_zeta",
                }
                extra.append(orphan)
            shuffled = batch + extra
            rng.shuffle(shuffled)
            posted_at = time.monotonic()
            if await self._post_batch(shuffled, skew_ms) is None:
                # Not ACKed even after retries: nothing to expect of it.
                self.report.expectations.pop(key, None)
                self.report.abandoned_opportunities += 1
                return
            if self._delayed(answered_at, posted_at):
                self.report.expectations[key].delayed = True
            for event in extra:
                if event.get("source_id") == "net_zeta":
                    self.report.orphans_sent += 1
                    self.report.orphan_event_ids.add(event["event_id"])
            if rng.random() < config.resend_share:
                self.report.resent_batches += 1
                await self._post_batch(shuffled, skew_ms)
            await asyncio.sleep(rng.uniform(0.05, 0.5))
        if rng.random() < config.conflict_share:
            conflicting = dict(events[0], ts=events[0]["ts"] + 1)
            self.report.conflicts_sent += 1
            await self._post_batch([conflicting], skew_ms)

    async def invalid_bodies(self) -> None:
        for _ in range(self.config.invalid_body_count):
            response = await self.client.post(
                "/v1/events", content=b"{not json", headers=self.headers
            )
            self.report.invalid_bodies[str(response.status_code)] += 1


async def run_simulation(config: SimulationConfig, progress: Any = None) -> SimulationReport:
    """Run the fleet for ``duration_s`` at ``rate_rps``; wait for stragglers."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=config.base_url, timeout=10.0, limits=limits) as client:
        fleet = _Fleet(config, client)
        fleet.report.started_at_ms = _now_ms()
        semaphore = asyncio.Semaphore(config.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()

        async def one() -> None:
            async with semaphore:
                await fleet.opportunity()

        await fleet.invalid_bodies()
        started = time.monotonic()
        next_at = started
        while (elapsed := time.monotonic() - started) < config.duration_s:
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += 1.0 / config.rate_at(elapsed)
            if progress is not None:
                progress(fleet.report, elapsed)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if tasks:
            await asyncio.gather(*tasks)
        fleet.report.finished_at_ms = _now_ms()
        return fleet.report


def merge_reports(reports: list[SimulationReport]) -> SimulationReport:
    """One report of several simulator processes' (their opportunities are distinct)."""
    merged = SimulationReport()
    merged.started_at_ms = min(r.started_at_ms for r in reports)
    merged.finished_at_ms = max(r.finished_at_ms for r in reports)
    for report in reports:
        for name in ("requests_sent", "requests_ok", "fills", "no_fills", "batches_sent",
                     "events_sent", "events_accepted", "resent_batches", "conflicts_sent",
                     "orphans_sent", "abandoned_opportunities"):  # fmt: skip
            setattr(merged, name, getattr(merged, name) + getattr(report, name))
        merged.request_errors.update(report.request_errors)
        merged.batch_errors.update(report.batch_errors)
        merged.invalid_bodies.update(report.invalid_bodies)
        merged.events_rejected.update(report.events_rejected)
        merged.request_latency_ms.extend(report.request_latency_ms)
        merged.batch_latency_ms.extend(report.batch_latency_ms)
        merged.expectations.update(report.expectations)
        merged.orphan_event_ids.update(report.orphan_event_ids)
    return merged


def _simulate_in_child(config: SimulationConfig) -> SimulationReport:
    return asyncio.run(run_simulation(config))


def run_simulation_processes(config: SimulationConfig, processes: int) -> SimulationReport:
    """The fleet split over ``processes`` (each a share of the rate): one Python process's
    HTTP client tops out near 100-150 requests/s with the events that follow them."""
    if processes <= 1:
        return asyncio.run(run_simulation(config))
    shares = [
        dataclasses.replace(
            config,
            seed=config.seed + n,
            rate_rps=config.rate_rps / processes,
            rate_schedule=tuple((at, rps / processes) for at, rps in config.rate_schedule),
            invalid_body_count=config.invalid_body_count if n == 0 else 0,
            max_in_flight=max(1, config.max_in_flight // processes),
        )
        for n in range(processes)
    ]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return merge_reports(pool.map(_simulate_in_child, shares))
