"""End-to-end reconciliation of a simulated run against Postgres.

Checks, for every opportunity the simulator got an answer for:

1. exactly one archive record exists;
2. it equals what the pure rules recompute from the stored inputs
   (``replay.run.recompute``): the dataflow and replay agree;
3. it says what the simulator expected (outcome, credited source,
   revenue, rewarded flag);
4. every event id the simulator got ACKed is stored exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from mediation.sim.simulate import SimulationReport
from replay.run import recompute
from storage.hot_records import load_archives, load_inputs
from storage.run_reads import orphans_stored

__all__ = ["Reconciliation", "reconcile"]


@dataclass
class Reconciliation:
    opportunities: int = 0
    archived: int = 0
    recompute_mismatches: list[str] = field(default_factory=list)
    expectation_mismatches: list[str] = field(default_factory=list)
    events_expected: int = 0
    events_stored: int = 0
    missing_event_ids: list[str] = field(default_factory=list)
    orphans_expected: int = 0
    orphans_stored: int = 0
    # Expectations not compared: a batch of theirs was delayed (Expectation.delayed).
    expectations_delayed: int = 0

    @property
    def closed_exactly_once(self) -> bool:
        """One archive per opportunity, equal to the rules; every ACKed event and orphan stored."""
        return (
            self.archived == self.opportunities
            and not self.recompute_mismatches
            and not self.missing_event_ids
            and self.orphans_stored == self.orphans_expected
        )

    @property
    def ok(self) -> bool:
        """``closed_exactly_once``, and every archive says what the simulator expected."""
        return self.closed_exactly_once and not self.expectation_mismatches


def count_archived(conn: psycopg.Connection, report: SimulationReport) -> int:
    return len(load_archives(conn, report.expectations))


def reconcile(conn: psycopg.Connection, report: SimulationReport) -> Reconciliation:
    result = Reconciliation(opportunities=len(report.expectations))
    keys = list(report.expectations)
    archives = load_archives(conn, keys)
    inputs = load_inputs(conn, keys)
    result.archived = len(archives)
    stored_ids: set[str] = set()
    for key, expected in report.expectations.items():
        archive = archives.get(key)
        stored = inputs.get(key)
        if stored is not None:
            stored_ids.update(e.event_id for e in stored.events + stored.late_events)
        if archive is None or stored is None:
            continue
        if recompute(stored) != archive:
            result.recompute_mismatches.append(key)
        if expected.delayed:
            result.expectations_delayed += 1
            continue
        got = (
            archive.outcome,
            archive.credited_source_id,
            archive.revenue_micros,
            archive.rewarded,
        )
        want = (
            expected.outcome,
            expected.credited_source_id,
            expected.revenue_micros,
            expected.rewarded,
        )
        if got != want:
            result.expectation_mismatches.append(f"{key}: expected {want}, archived {got}")
    for expected in report.expectations.values():
        result.events_expected += len(expected.event_ids)
        for event_id in expected.event_ids:
            if event_id in stored_ids:
                result.events_stored += 1
            else:
                result.missing_event_ids.append(event_id)
    result.orphans_expected = len(report.orphan_event_ids)
    if report.orphan_event_ids:
        result.orphans_stored = orphans_stored(conn, report.orphan_event_ids)
    return result
