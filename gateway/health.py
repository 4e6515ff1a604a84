"""``/healthz`` (alive), ``/readyz`` (dependencies reachable), ``/metrics``."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from .context import context_of
from .http import json_response

__all__ = ["healthz", "metrics", "readyz"]


async def healthz(_request: Request) -> Response:
    return json_response({"status": "ok"})


async def _check_postgres(request: Request) -> bool:
    ctx = context_of(request)
    try:
        async with ctx.pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
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


async def readyz(request: Request) -> Response:
    postgres, redis_ok, kafka = await asyncio.gather(
        _check_postgres(request), _check_redis(request), _check_kafka(request)
    )
    checks = {"postgres": postgres, "redis": redis_ok, "kafka": kafka}
    ready = all(checks.values())
    return json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503
    )


async def metrics(request: Request) -> Response:
    registry = context_of(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
