"""``POST /v1/requests`` (A/E: request -> delivery) and ``GET /v1/config`` (H read)."""

from __future__ import annotations

from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from mediation.rules.identity import device_hash, rollout_bucket
from mediation.rules.model import Opportunity, WaterfallEntry
from mediation.rules.ulid import encode_ulid
from mediation.rules.validation import SyncRequest, validate_sync_request
from mediation.rules.waterfall import RuntimeConfig, choose_waterfall
from mediation.wire import encode_opportunity

from .context import GatewayContext, context_of
from .errors import (
    REQUEST_REFUSALS,
    ApiError,
    ApiRefusalError,
    ApiUnavailableError,
    Translation,
    translated,
)
from .guards import authenticate, check_rate_limit
from .http import json_response, read_json_body
from .idempotency import InvalidIdempotencyKeyError, check_idempotency_key
from .ids import random_bytes
from .producer import ProduceFailedError, ProduceTimeoutError

__all__ = ["get_config", "post_request"]

MAX_REQUEST_BODY_BYTES = 16 * 1024
# How long the SDK may use a delivery before asking again.
DELIVERY_TTL_MS = 5 * 60 * 1000


def _unusable_idempotency_key(exc: InvalidIdempotencyKeyError) -> ApiError:
    return ApiRefusalError(400, "invalid_idempotency_key", str(exc))


def _not_recorded(exc: ProduceTimeoutError | ProduceFailedError) -> ApiError:
    return ApiUnavailableError(
        503,
        "broker_unavailable",
        f"request not recorded, retry: {exc}",
        headers={"Retry-After": "1"},
    )


_IDEMPOTENCY_KEY_REFUSALS: Translation = {InvalidIdempotencyKeyError: _unusable_idempotency_key}


async def post_request(request: Request) -> Response:
    ctx = context_of(request)
    app_id = await authenticate(ctx, request)
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None:
        with translated(_IDEMPOTENCY_KEY_REFUSALS):
            check_idempotency_key(idempotency_key)
    body, raw = await read_json_body(request, MAX_REQUEST_BODY_BYTES)
    if idempotency_key is None:
        return await _answer(ctx, app_id, body)

    # A stored answer is replayed before anything else runs: rate limits,
    # config or breakers may have changed since, and a retry must still get
    # the same bytes.
    claim = await ctx.idempotency.claim(app_id, idempotency_key, raw)
    if claim.kind == "replay":
        ctx.metrics.idempotent_replays.inc()
        return Response(
            claim.response, media_type="application/json", headers={"Idempotent-Replayed": "true"}
        )
    if claim.kind == "conflict":
        raise ApiRefusalError(
            422, "idempotency_key_reused", "this Idempotency-Key was used with a different body"
        )
    if claim.kind == "in_flight":
        raise ApiRefusalError(
            409,
            "request_in_flight",
            "a request with this Idempotency-Key is still being processed",
            headers={"Retry-After": "1"},
        )
    if claim.kind == "unavailable" or claim.lease is None:
        raise _idempotency_unavailable(ctx, "the Idempotency-Key store did not answer in time")
    lease = claim.lease
    try:
        response = await _answer(ctx, app_id, body)
    except BaseException:
        # Refused or failed: the key is free again, so the retry runs for real.
        await lease.release()
        raise
    # Served only once recorded: an answer the store does not hold could be
    # minted a second time by the retry.
    if not await lease.finish(bytes(response.body)):
        raise _idempotency_unavailable(ctx, "the answer could not be recorded under its key")
    return response


def _idempotency_unavailable(ctx: GatewayContext, why: str) -> ApiError:
    ctx.metrics.idempotency_unavailable.inc()
    return ApiUnavailableError(
        503,
        "idempotency_unavailable",
        f"{why}; request not served, retry with the same Idempotency-Key",
        headers={"Retry-After": "1"},
    )


async def _answer(ctx: GatewayContext, app_id: str, body: object) -> Response:
    """Rate limit, validate, choose the waterfall, then decide: the 200 answer, or raise."""
    check_rate_limit(ctx, app_id, "requests")
    with translated(REQUEST_REFUSALS):
        sync = validate_sync_request(body)
    bucket = rollout_bucket(sync.device_id)
    published = ctx.catalog.config_for(app_id, bucket)
    if published is None:
        raise ApiRefusalError(
            409, "no_published_config", f"app {app_id} has no published config yet"
        )
    config = published.runtime
    waterfall = choose_waterfall(config, sync.placement_id, sync.context)
    if waterfall is None:
        ctx.cohorts.request(app_id, config.version, error=True)
        raise ApiRefusalError(
            422,
            "unknown_placement",
            f"placement {sync.placement_id!r} is not in config v{config.version}",
        )
    # Open circuit breakers drop their sources (but for a probing trickle).
    waterfall = ctx.breakers.admit(app_id, waterfall)
    return await _decide(ctx, app_id, sync, bucket, config, waterfall)


async def _decide(
    ctx: GatewayContext,
    app_id: str,
    sync: SyncRequest,
    bucket: int,
    config: RuntimeConfig,
    waterfall: tuple[WaterfallEntry, ...],
) -> Response:
    """Mint the opportunity, put it on Kafka, answer with the delivery."""
    received_ms = ctx.clock_ms()
    opportunity_key = encode_ulid(received_ms, random_bytes(10))
    status: Literal["fill", "no_fill"] = "fill" if waterfall else "no_fill"
    opportunity = Opportunity(
        opportunity_key=opportunity_key,
        app_id=app_id,
        placement_id=sync.placement_id,
        device_hash=device_hash(app_id, sync.device_id),
        ts_ms=received_ms,
        client_ts_ms=sync.ts_ms,
        config_version=config.version,
        rollout_bucket=bucket,
        context=sync.context,
        delivery_id=encode_ulid(received_ms, random_bytes(10)),
        status=status,
        waterfall=waterfall,
        expires_at_ms=received_ms + DELIVERY_TTL_MS,
        closure_window_ms=config.closure_window_ms,
        grace_ms=config.grace_ms,
        skew_tolerance_ms=config.skew_tolerance_ms,
    )
    message = (opportunity_key.encode(), encode_opportunity(opportunity))
    try:
        await ctx.producer.send_all(
            ctx.settings.topics_for(opportunity_key).opportunities,
            [message],
            ctx.settings.produce_timeout_ms / 1000,
        )
    except (ProduceTimeoutError, ProduceFailedError) as exc:
        ctx.cohorts.request(app_id, config.version, error=True)
        raise _not_recorded(exc) from exc
    ctx.metrics.confirm_opportunities.observe((ctx.clock_ms() - received_ms) / 1000)
    ctx.metrics.count_opportunity(status)
    ctx.metrics.count_sync_answer(app_id, sync.placement_id, status)
    ctx.cohorts.request(app_id, config.version, no_fill=status == "no_fill")
    return json_response(
        {
            "opportunity_key": opportunity_key,
            "config_version": config.version,
            "delivery": {
                "delivery_id": opportunity.delivery_id,
                "status": status,
                "waterfall": [
                    {
                        "source_id": e.source_id,
                        "floor_micros": e.floor_micros,
                        "timeout_ms": e.timeout_ms,
                    }
                    for e in waterfall
                ],
                "expires_at_ms": opportunity.expires_at_ms,
            },
        }
    )


async def get_config(request: Request) -> Response:
    ctx = context_of(request)
    app_id = await authenticate(ctx, request)
    device_id = request.query_params.get("device_id")
    if device_id is not None and not 1 <= len(device_id) <= 128:
        raise ApiRefusalError(422, "invalid_device_id", "device_id must be 1..128 chars")
    # The device's rollout bucket decides between the new and the previous
    # version while a rollout is under way; without a device id: the stable one.
    bucket = rollout_bucket(device_id) if device_id is not None else None
    published = ctx.catalog.config_for(app_id, bucket)
    if published is None:
        raise ApiRefusalError(
            404, "no_published_config", f"app {app_id} has no published config yet"
        )
    etag = f'"{published.checksum}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return json_response(
        {
            "app_id": app_id,
            "rollout_bucket": bucket,
            "version": published.version,
            "checksum": published.checksum,
            "config": published.body,
        },
        headers={"ETag": etag, "Cache-Control": "private, max-age=0, must-revalidate"},
    )
