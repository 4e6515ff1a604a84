"""Record builders shared by the dataflow, sink and watermark tests.

(The rules tests have richer builders in ``tests/rules/conftest.py``.)
"""

from __future__ import annotations

from typing import Any

from mediation.rules.model import Event, Opportunity, WaterfallEntry

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


def event(
    key: str, event_id: str, type_: str, at: int, received_after: int = 0, **overrides: Any
) -> Event:
    """An event of app ``app`` from ``net_a``, ``at`` ms after ``T0``; impressions earn 500."""
    fields: dict[str, Any] = {
        "event_id": event_id,
        "app_id": "app",
        "opportunity_key": key,
        "type": type_,
        "ts_ms": T0 + at,
        "server_ts_ms": T0 + at,
        "received_at_ms": T0 + at + received_after,
        "source_id": "net_a",
        "revenue_micros": 500 if type_ == "impression" else None,
        "currency": "USD" if type_ == "impression" else None,
        **overrides,
    }
    return Event(**fields)
