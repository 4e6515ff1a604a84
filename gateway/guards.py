"""Checks every SDK route makes first: who is calling, and are they over their rate."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from mediation.rules.waterfall import DEFAULT_EVENT_BATCHES_PER_S, DEFAULT_REQUESTS_PER_S

from .context import GatewayContext
from .http import error_response

__all__ = ["authenticate", "rate_limited"]

_DEFAULT_LIMITS = {"requests": DEFAULT_REQUESTS_PER_S, "event_batches": DEFAULT_EVENT_BATCHES_PER_S}


async def authenticate(ctx: GatewayContext, request: Request) -> str | Response:
    """The app of the caller's write key, or the 401 to answer."""
    app_id = await ctx.catalog.app_for_key(request.headers.get("x-app-key"))
    if app_id is None:
        return error_response(
            401, "unknown_app_key", "X-App-Key is missing or not a valid write key"
        )
    return app_id


def rate_limited(ctx: GatewayContext, app_id: str, kind: str) -> Response | None:
    """The 429 to answer when the app is over its per-second limit for ``kind``."""
    published = ctx.catalog.config_for(app_id)
    if published is None:
        limit = _DEFAULT_LIMITS[kind]
    elif kind == "requests":
        limit = published.runtime.requests_per_s
    else:
        limit = published.runtime.event_batches_per_s
    if ctx.rate_limiter.allow(app_id, kind, limit):
        return None
    ctx.metrics.rate_limited.labels(kind).inc()
    return error_response(
        429,
        "rate_limited",
        f"app {app_id} is over its limit of {limit} {kind} per second",
        {"limit_per_s": limit},
        headers={"Retry-After": "1"},
    )
