"""Checks every SDK route makes first: who is calling, and are they over their rate.

Failed authentication, SDK and admin alike, is budgeted per client address
(``auth_throttle.py``): ``check_auth_budget`` refuses with 429 before
credentials are looked at, ``count_auth_failure`` spends the budget. Each
check raises the API error to answer (``errors.py``).
"""

from __future__ import annotations

import time

from starlette.requests import Request

from mediation.rules.waterfall import DEFAULT_EVENT_BATCHES_PER_S, DEFAULT_REQUESTS_PER_S

from .context import GatewayContext
from .errors import ApiRefusalError

__all__ = ["authenticate", "check_auth_budget", "check_rate_limit", "count_auth_failure"]

_DEFAULT_LIMITS = {"requests": DEFAULT_REQUESTS_PER_S, "event_batches": DEFAULT_EVENT_BATCHES_PER_S}


def _address(request: Request) -> str:
    # The peer, or the client a trusted proxy names (uvicorn's
    # --forwarded-allow-ips / FORWARDED_ALLOW_IPS; docs/operations.md).
    client = request.client
    return client.host if client is not None else "unknown"


def check_auth_budget(ctx: GatewayContext, request: Request) -> None:
    """Refuse (429) a caller whose address has failed authentication too often."""
    refusal = ctx.auth_failures.refusal(_address(request), time.monotonic())
    if refusal is None:
        return
    ctx.metrics.auth_throttled.labels(refusal.scope).inc()
    raise ApiRefusalError(
        429,
        "auth_throttled",
        "too many failed authentications from this address"
        if refusal.scope == "address"
        else "too many failed authentications; this address failed recently",
        {"scope": refusal.scope},
        headers={"Retry-After": str(refusal.retry_after_s)},
    )


def count_auth_failure(ctx: GatewayContext, request: Request, kind: str) -> None:
    """Spend one failure of the caller's budget; ``kind``: ``app_key`` or ``admin_token``."""
    ctx.auth_failures.record_failure(_address(request), time.monotonic())
    ctx.metrics.auth_failures.labels(kind).inc()


async def authenticate(ctx: GatewayContext, request: Request) -> str:
    """The app of the caller's write key; refused with 401 (429 while throttled)."""
    check_auth_budget(ctx, request)
    app_id = await ctx.catalog.app_for_key(request.headers.get("x-app-key"))
    if app_id is None:
        count_auth_failure(ctx, request, "app_key")
        raise ApiRefusalError(
            401, "unknown_app_key", "X-App-Key is missing or not a valid write key"
        )
    return app_id


def check_rate_limit(ctx: GatewayContext, app_id: str, kind: str) -> None:
    """Refuse (429) an app over its per-second limit for ``kind``."""
    published = ctx.catalog.config_for(app_id)
    if published is None:
        limit = _DEFAULT_LIMITS[kind]
    elif kind == "requests":
        limit = published.runtime.requests_per_s
    else:
        limit = published.runtime.event_batches_per_s
    if ctx.rate_limiter.allow(app_id, kind, limit):
        return
    ctx.metrics.rate_limited.labels(kind).inc()
    raise ApiRefusalError(
        429,
        "rate_limited",
        f"app {app_id} is over its limit of {limit} {kind} per second",
        {"limit_per_s": limit},
        headers={"Retry-After": "1"},
    )
