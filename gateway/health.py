"""``/healthz`` (alive), ``/readyz`` (what the gateway can serve now), ``/metrics``.

``/readyz`` answers 200 while the SDK routes can be served: ``ready`` with
every dependency up, ``degraded`` (with the reason per dependency) when
only optional ones are down. It answers 503 ``not_ready`` when a required
one is down, so that a load balancer takes out only the gateways that
cannot serve.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from storage.catalog_reads import check_connection

from .context import context_of
from .http import json_response

__all__ = ["healthz", "metrics", "readyz"]


async def healthz(_request: Request) -> Response:
    return json_response({"status": "ok"})


async def _check_postgres(request: Request) -> bool:
    ctx = context_of(request)
    try:
        async with ctx.pool.connection(timeout=2) as conn:
            await check_connection(conn)
    except Exception:
        return False
    return True


async def _check_redis(request: Request) -> bool:
    try:
        return bool(await asyncio.wait_for(context_of(request).redis.ping(), 2))
    except Exception:
        return False


async def _check_kafka(request: Request) -> bool:
    return await asyncio.to_thread(context_of(request).producer.ready, 2.0)


# What each dependency's absence costs. Redis only speeds up and
# coordinates the request path (docs/operations.md, "The sync path"), and
# the SDK routes read keys and configs from the in-process catalog, loaded
# before the gateway started serving: without either the SDK routes still
# serve, so a gateway stays in rotation. Taking every gateway out during a
# database blip would refuse traffic that could be served and confirmed.
_OPTIONAL = {
    "redis": "Redis is unreachable: the SDK routes still serve, rate limits per process "
    "and breaker state unshared, but a sync request with an Idempotency-Key gets 503 "
    "idempotency_unavailable (never served unguarded) until it is back",
    "postgres": "Postgres is unreachable: the SDK routes still serve from the cached keys "
    "and configs (new keys, revocations and config changes wait for it); admin and replay "
    "routes fail",
}
_REQUIRED = {
    "kafka": "the broker is unreachable: no sync request or event batch can be confirmed",
}


async def readyz(request: Request) -> Response:
    postgres, redis_ok, kafka = await asyncio.gather(
        _check_postgres(request), _check_redis(request), _check_kafka(request)
    )
    checks = {"postgres": postgres, "redis": redis_ok, "kafka": kafka}
    failing = {name: why for name, why in _REQUIRED.items() if not checks[name]}
    degraded = {name: why for name, why in _OPTIONAL.items() if not checks[name]}
    status = "not_ready" if failing else "degraded" if degraded else "ready"
    body = {"status": status, "checks": checks, "degraded": degraded, "failing": failing}
    return json_response(body, 503 if failing else 200)


async def metrics(request: Request) -> Response:
    registry = context_of(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
