"""Demo data: one app, its write key, and a published config.

Idempotent: running it again keeps the app, adds the key if it is new, and
publishes a new config version only when the body changed.
"""

from __future__ import annotations

from typing import Any

from mediation.rules.waterfall import parse_config
from storage.keys import new_app_key
from storage.seeding import SeedResult, seed_app_rows

__all__ = ["SeedResult", "demo_config", "new_app_key", "seed_app"]


def demo_config(closure_window_ms: int = 30 * 60 * 1000, grace_ms: int = 30_000) -> dict[str, Any]:
    """Three placements, four sources, targeting that makes some no-fill."""
    return {
        "closure_window_ms": closure_window_ms,
        "grace_ms": grace_ms,
        "skew_tolerance_ms": 5 * 60 * 1000,
        "max_waterfall_depth": 3,
        "placements": {
            "interstitial_main": {
                "waterfall": [
                    {
                        "source_id": "net_alpha",
                        "floor_micros": 2_500_000,
                        "timeout_ms": 2000,
                        "countries": ["US", "CA", "GB"],
                    },
                    {"source_id": "net_beta", "floor_micros": 1_200_000, "timeout_ms": 1500},
                    {"source_id": "net_gamma", "floor_micros": 400_000, "timeout_ms": 1000},
                    {"source_id": "net_delta", "floor_micros": 100_000, "timeout_ms": 1000},
                ]
            },
            "rewarded_main": {
                "waterfall": [
                    {
                        "source_id": "net_beta",
                        "floor_micros": 3_000_000,
                        "timeout_ms": 2500,
                        "os": ["ios"],
                    },
                    {"source_id": "net_alpha", "floor_micros": 2_000_000, "timeout_ms": 2500},
                ]
            },
            "banner_home": {
                "waterfall": [
                    {
                        "source_id": "net_gamma",
                        "floor_micros": 150_000,
                        "timeout_ms": 800,
                        "countries": ["US"],
                    },
                ]
            },
        },
    }


def seed_app(
    database_url: str,
    app_id: str,
    config: dict[str, Any],
    app_key: str | None = None,
    actor: str = "seed",
) -> SeedResult:
    """The app, its write key and ``config`` published at 100% (``storage/seeding.py``)."""
    parse_config(1, config)  # refuse an invalid body before writing anything
    return seed_app_rows(database_url, app_id, config, app_key, actor)
