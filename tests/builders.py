"""Record builders shared by the dataflow, sink and watermark tests.

(The rules tests have richer builders in ``tests/rules/conftest.py``.)
"""

from __future__ import annotations

from typing import Any

from mediation.rules.model import Opportunity, WaterfallEntry

T0 = 1_760_000_000_000


def opportunity(key: str, **overrides: Any) -> Opportunity:
    """A filled opportunity of app ``app`` at ``T0``: one source, 10 s window, 1 s grace."""
    fields: dict[str, Any] = {
        "opportunity_key": key,
        "app_id": "app",
        "placement_id": "p",
        "device_hash": "d",
        "ts_ms": T0,
        "client_ts_ms": T0,
        "config_version": 1,
        "rollout_bucket": 3,
        "context": {"country": "US"},
        "delivery_id": "del",
        "status": "fill",
        "waterfall": (WaterfallEntry("net_a", 100, 1000),),
        "expires_at_ms": T0 + 1,
        "closure_window_ms": 10_000,
        "grace_ms": 1_000,
        "skew_tolerance_ms": 1_000,
    }
    fields.update(overrides)
    return Opportunity(**fields)
