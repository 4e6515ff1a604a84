"""A bounded soak: the whole stack under constant traffic, memory flat, p95 under 300 ms.

CI runs the soak profile in a short, slower form (``MEDIATION_SOAK_S``
seconds, default 60, at ``MEDIATION_SOAK_RPS``, default 40) with the
worker's state kept briefly, so its steady size is reached in the first
22 s and the rest of the run measures. The full form is ``mediation
simulate --profile soak`` (10 minutes at the seed's peak; ``--duration``
for longer).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from mediation.ops.peak import PROFILES, run_profile
from mediation.settings import Settings

pytestmark = pytest.mark.integration

SOAK_S = float(os.environ.get("MEDIATION_SOAK_S", "60"))
SOAK_RPS = float(os.environ.get("MEDIATION_SOAK_RPS", "40"))


def test_soak_keeps_memory_flat_p95_low_and_closes_everything(
    settings: Settings, tmp_path: Path
) -> None:
    profile = dataclasses.replace(
        PROFILES["soak"].at_rate(SOAK_RPS), closure_window_ms=5_000, tombstone_ttl_ms=10_000
    )
    folder, passed = run_profile(
        settings, profile, SOAK_S, tmp_path / "soak", simulator_processes=1
    )
    summary = json.loads((folder / "summary.json").read_text())
    report = (folder / "report.md").read_text()
    assert set(summary["checks"]) == {
        "closure", "load", "ack_success", "gateway_sync_p95_ms", "memory"
    }  # fmt: skip
    assert passed, report
    assert summary["requests_ok"] == summary["requests_sent"] > SOAK_S * SOAK_RPS * 0.9
    assert sum(sample["server_errors"] for sample in summary["samples"]) == 0
