"""The gateway application factory.

``create_app(settings, roles)`` serves the sync API (``api``: requests and
config reads), event ingest (``ingest``), or both; the seed's
``mediation-api`` and ``mediation-event-ingest`` are the same code started
with different roles. Clients are created in the lifespan and handed to
handlers through ``app.state.ctx``; nothing is a module global. Handlers
raise the API errors they answer; one handler renders them (``errors.py``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mediation.settings import GATEWAY_ROLES, Settings

from .admin import create_app_key, list_app_keys, revoke_app_key
from .admin_configs import (
    create_config,
    get_config_version,
    get_publish_operation,
    list_config_versions,
    rollback_publish_operation,
    start_publish_operation,
    switch_degradation_profile,
)
from .breakers import BreakerBoard
from .catalog import Catalog
from .cohorts import CohortCounters
from .context import GatewayContext
from .errors import API_ERRORS, EXCEPTION_HANDLERS, api_error_response, internal_error_response
from .health import healthz, metrics, readyz
from .http import json_response
from .idempotency import IdempotencyStore
from .ids import random_bytes
from .ingest import post_events
from .metrics import GatewayMetrics
from .openapi import openapi_document
from .producer import AsyncProducer
from .ratelimit import RateLimiter
from .replay_api import get_replay, post_replay
from .sync import get_config, post_request

__all__ = ["ROLES", "GatewayApp", "create_app"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("mediation.access")
_ID_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")

ROLES = GATEWAY_ROLES  # the vocabulary is the settings'


class _AccountingMiddleware:
    """Pure-ASGI, per request: a request id, latency and status metrics, access log.

    The ``X-Request-Id`` (the client's, when it sent a sane one) is echoed in
    the response so support can find a call. The access log is one JSON line
    per request (``MEDIATION_ACCESS_LOG=1``) with route, status, duration and
    request id: never headers, keys or bodies.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, access_log: bool):
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        status_holder = {"status": 500}

        started_holder: list[bool] = []

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                started_holder.append(True)
                status_holder["status"] = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            # Answer in the error shape, with the request id to quote to
            # support; the traceback goes to the log, never to the client.
            log.exception("unhandled error (request id %s)", request_id.decode())
            if status_holder["status"] == 500 and not started_holder:
                response = internal_error_response()
                await response(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            self.metrics.observe_http(path, status_holder["status"], elapsed)
            if self.access_log:
                access_log.info(
                    orjson.dumps(
                        {
                            "method": scope.get("method"),
                            "route": path,
                            "status": status_holder["status"],
                            "duration_ms": round(elapsed * 1000, 3),
                            "request_id": request_id.decode(),
                        }
                    ).decode()
                )


def _request_id(scope: Scope) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            if 8 <= len(value) <= 64 and all(c in _ID_BYTES for c in value):
                return bytes(value)
            break
    return random_bytes(8).hex().encode()


def create_app(settings: Settings, roles: frozenset[str] = ROLES) -> GatewayApp:
    unknown = roles - ROLES
    if unknown or not roles:
        raise ValueError(
            f"roles must be a non-empty subset of {sorted(ROLES)}, got {sorted(roles)}"
        )
    gateway_metrics = GatewayMetrics.create()
    document = openapi_document(roles)

    async def openapi(_request: Any) -> Any:
        return json_response(document)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    if "api" in roles:
        routes += [
            Route("/v1/requests", post_request, methods=["POST"]),
            Route("/v1/config", get_config, methods=["GET"]),
            # Admin routes stay flat rather than under Mount("/v1/admin"): a
            # Mount would answer GET /v1/admin with a slash redirect (307)
            # instead of 404, and hide its routes from app.routes, where the
            # OpenAPI document is checked against what is served.
            Route("/v1/admin/apps/{app_id}/keys", list_app_keys, methods=["GET"]),
            Route("/v1/admin/apps/{app_id}/keys", create_app_key, methods=["POST"]),
            Route("/v1/admin/apps/{app_id}/keys/{prefix}/revoke", revoke_app_key, methods=["POST"]),
            Route("/v1/admin/apps/{app_id}/configs", create_config, methods=["POST"]),
            Route("/v1/admin/apps/{app_id}/configs", list_config_versions, methods=["GET"]),
            Route(
                "/v1/admin/apps/{app_id}/configs/{version}",
                get_config_version,
                methods=["GET"],
            ),
            Route("/v1/admin/apps/{app_id}/publish", start_publish_operation, methods=["POST"]),
            Route(
                "/v1/admin/apps/{app_id}/degradation",
                switch_degradation_profile,
                methods=["POST"],
            ),
            Route("/v1/admin/publish/{operation_id}", get_publish_operation, methods=["GET"]),
            Route(
                "/v1/admin/publish/{operation_id}/rollback",
                rollback_publish_operation,
                methods=["POST"],
            ),
            Route("/v1/replay", post_replay, methods=["POST"]),
            Route("/v1/replay/{replay_id}", get_replay, methods=["GET"]),
        ]
    if "ingest" in roles:
        routes.append(Route("/v1/events", post_events, methods=["POST"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=4,
            open=False,
            kwargs={"prepare_threshold": None, "autocommit": True},
        )
        await pool.open(wait=True, timeout=10)
        # Short timeouts: Redis is an optimisation on the request path (the
        # request is served without it; one with an Idempotency-Key gets a
        # quick 503), so it must never stall a request. A keyed request waits
        # for the store as long as MEDIATION_IDEMPOTENCY_TIMEOUT_MS says (its
        # own deadline), so the socket never gives up before that.
        socket_timeout_s = max(_REDIS_SOCKET_TIMEOUT_S, settings.idempotency_timeout_ms / 1000)
        redis_client = aioredis.from_url(
            settings.redis_url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=_REDIS_SOCKET_TIMEOUT_S,
        )
        producer = AsyncProducer(settings.kafka_bootstrap_servers)
        catalog = Catalog(pool, degradation_gauge=gateway_metrics.degradation_active)
        await catalog.start()
        gateway_metrics.watch_rollouts(catalog.rollout_positions)
        rate_limiter = RateLimiter(
            redis_client, settings.topic_prefix, gateway_metrics.ratelimit_degraded
        )
        await rate_limiter.start()
        breakers = BreakerBoard(
            redis_client, settings.topic_prefix, catalog, gateway_metrics.breaker_open
        )
        await breakers.start()
        cohorts = CohortCounters(redis_client, settings.topic_prefix)
        cohorts.start()
        app.state.ctx = GatewayContext(
            settings=settings,
            pool=pool,
            redis=redis_client,
            producer=producer,
            catalog=catalog,
            metrics=gateway_metrics,
            idempotency=IdempotencyStore(
                redis_client,
                settings.topic_prefix,
                lease_ms=settings.idempotency_lease_ms,
                timeout_ms=settings.idempotency_timeout_ms,
            ),
            rate_limiter=rate_limiter,
            breakers=breakers,
            cohorts=cohorts,
        )
        log.info("gateway ready (roles: %s)", ", ".join(sorted(roles)))
        try:
            yield
        finally:
            # Requests are drained by the server before this runs; flushing
            # the producer last means nothing ACKed is left behind.
            await cohorts.stop()
            await breakers.stop()
            await rate_limiter.stop()
            await catalog.stop()
            left = producer.close()
            await redis_client.aclose()
            await pool.close()
            log.info("gateway stopped (%d message(s) unflushed)", left)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=dict(EXCEPTION_HANDLERS))
    hot = {route.path: route.endpoint for route in routes if route.path in _HOT_PATHS}
    return GatewayApp(app, hot, gateway_metrics, settings.access_log)


_HOT_PATHS = frozenset({"/v1/requests", "/v1/events"})
_REDIS_SOCKET_TIMEOUT_S = 0.25


@dataclass(frozen=True, slots=True)
class _RouteLabel:
    path: str


class GatewayApp:
    """The ASGI app: accounting around a direct path for the two SDK routes.

    ``POST /v1/requests`` and ``POST /v1/events`` carry nearly all traffic;
    Starlette's router and middleware stack cost about 30 us of CPU per
    request (measured: a raw ASGI endpoint answers in 23 us what a Starlette
    one does in 52 us), so those two go straight to their handlers. The
    handlers stay ordinary Starlette endpoints (Request in, Response out, or
    an API error raised, rendered by the same function as Starlette's
    handler); everything else (health, config, admin, 404/405) goes through
    Starlette.
    Attributes (``state``, ``routes``, ``router``) are the Starlette app's.
    """

    def __init__(
        self,
        app: Starlette,
        hot: dict[str, Callable[[Request], Awaitable[Response]]],
        metrics: GatewayMetrics,
        access_log: bool,
    ):
        self.starlette = app
        self._hot = hot
        self._labels = {path: _RouteLabel(path) for path in hot}
        self._entry = _AccountingMiddleware(self._dispatch, metrics, access_log)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.starlette, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._entry(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self._hot.get(scope["path"])
            if handler is not None:
                scope["app"] = self.starlette  # what Request.app (and so the context) reads
                scope["route"] = self._labels[scope["path"]]
                try:
                    response = await handler(Request(scope, receive))
                except API_ERRORS as exc:
                    response = api_error_response(exc)
                await response(scope, receive, send)
                return
        await self.starlette(scope, receive, send)
