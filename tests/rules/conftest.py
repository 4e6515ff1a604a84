"""Builders for the rules tests.

Plain functions, exposed as session-scoped factory fixtures (session scope so
that hypothesis tests may use them too). Times are relative to the
opportunity's time: ``make_event(at=2_000)`` is an event whose ``server_ts``
is two seconds after the default opportunity's ``ts``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from mediation.rules.model import Event, Opportunity, WaterfallEntry
from mediation.rules.ulid import encode_ulid

T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
RANDOMNESS = bytes(range(10))
APP_ID = "app_1"
DEFAULT_KEY = encode_ulid(T0_MS, RANDOMNESS)
DEFAULT_WATERFALL = (
    WaterfallEntry("net_a", 1_500_000, 1_500),
    WaterfallEntry("net_b", 1_000_000, 1_500),
)


def build_opportunity(**overrides: Any) -> Opportunity:
    """An opportunity of ``APP_ID`` at ``T0_MS`` with a two-source waterfall.

    Overriding ``ts_ms`` alone re-mints the key so that the key's time stays
    the opportunity's time.
    """
    ts_ms = overrides.get("ts_ms", T0_MS)
    fields: dict[str, Any] = {
        "opportunity_key": encode_ulid(ts_ms, RANDOMNESS),
        "app_id": APP_ID,
        "placement_id": "home_banner",
        "device_hash": "d" * 32,
        "ts_ms": ts_ms,
        "client_ts_ms": ts_ms - 250,
        "config_version": 3,
        "rollout_bucket": 42,
        "context": {"country": "US", "os": "ios"},
        "delivery_id": "del_1",
        "status": "fill",
        "waterfall": DEFAULT_WATERFALL,
        "expires_at_ms": ts_ms + 60_000,
        "closure_window_ms": 30 * 60 * 1000,
        "grace_ms": 30 * 1000,
        "skew_tolerance_ms": 5 * 60 * 1000,
    }
    fields.update(overrides)
    return Opportunity(**fields)


def build_event(*, at: int = 1_000, base_ms: int = T0_MS, **overrides: Any) -> Event:
    """An event ``at`` ms after ``base_ms`` (server time) for the default key.

    The client clock runs 40 ms behind and the copy is received 100 ms after
    its ``server_ts``; any field can be overridden.
    """
    server_ts = base_ms + at
    fields: dict[str, Any] = {
        "event_id": "e1",
        "app_id": APP_ID,
        "opportunity_key": encode_ulid(base_ms, RANDOMNESS),
        "type": "loaded",
        "ts_ms": server_ts - 40,
        "server_ts_ms": server_ts,
        "received_at_ms": server_ts + 100,
        "source_id": "net_a",
        "revenue_micros": None,
        "currency": None,
        "attrs": {},
    }
    fields.update(overrides)
    return Event(**fields)


def build_raw_event(**overrides: Any) -> dict[str, Any]:
    """A valid wire event (as in a ``POST /v1/events`` batch)."""
    raw: dict[str, Any] = {
        "event_id": "evt-0001",
        "opportunity_key": DEFAULT_KEY,
        "type": "impression",
        "ts": T0_MS + 5_000,
        "source_id": "net_a",
        "revenue_micros": 1_250,
        "currency": "USD",
        "attrs": {"ad_format": "banner", "w": 320, "ratio": 1.5, "muted": True, "x": None},
    }
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not _DROP}


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


# Pass as an override value to leave a field out of ``build_raw_event``.
_DROP = _Drop()


@pytest.fixture(scope="session")
def make_opportunity() -> Callable[..., Opportunity]:
    return build_opportunity


@pytest.fixture(scope="session")
def make_event() -> Callable[..., Event]:
    return build_event


@pytest.fixture(scope="session")
def make_raw_event() -> Callable[..., dict[str, Any]]:
    return build_raw_event


@pytest.fixture(scope="session")
def drop() -> object:
    """Sentinel: ``make_raw_event(currency=drop)`` leaves ``currency`` out."""
    return _DROP


def require_compiled_build() -> None:
    """Skip (with the reason) when the compiled build is not built; under CI, fail.

    CI builds it (scripts/bootstrap.sh), so a CI run without it has lost the
    test of the compiled build, not skipped it.
    """
    from mediation import native

    try:
        native.decide("compiled")
    except native.RulesBuildError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI without the compiled build: {exc}")
        pytest.skip(f"no compiled build ({exc}); python -m mediation.compile builds it")
