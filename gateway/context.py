"""What handlers are handed: the clients created in the app's lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from mediation.clock import now_ms
from mediation.settings import Settings

from .auth_throttle import AuthFailureBudget
from .breakers import BreakerBoard
from .catalog import Catalog
from .cohorts import CohortCounters
from .idempotency import IdempotencyStore
from .metrics import GatewayMetrics
from .producer import AsyncProducer
from .ratelimit import RateLimiter
from .resends import UnconfirmedSends

__all__ = ["GatewayContext", "context_of"]


@dataclass(frozen=True)
class GatewayContext:
    settings: Settings
    pool: AsyncConnectionPool
    redis: aioredis.Redis
    producer: AsyncProducer
    catalog: Catalog
    idempotency: IdempotencyStore
    rate_limiter: RateLimiter
    breakers: BreakerBoard
    cohorts: CohortCounters
    metrics: GatewayMetrics
    unconfirmed: UnconfirmedSends = field(default_factory=UnconfirmedSends)
    auth_failures: AuthFailureBudget = field(default_factory=AuthFailureBudget)
    clock_ms: Callable[[], int] = field(default=now_ms)


def context_of(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.ctx
    return ctx
