"""``POST /v1/events`` (F): validate each event, produce, ACK what the broker confirmed."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from mediation.rules.validation import (
    Rejection,
    RequestInvalidError,
    normalise_event,
    validate_batch_envelope,
)
from mediation.wire import encode_event_fields

from .context import context_of
from .guards import authenticate, rate_limited
from .http import error_response, json_response, read_json_body
from .producer import ProduceFailedError, ProduceTimeoutError

__all__ = ["MAX_BATCH_BYTES", "post_events"]

MAX_BATCH_BYTES = 1024 * 1024
# Events may reference opportunities this far back (hot retention) or ahead
# (device clocks cannot mint keys, but a bad SDK build could send garbage).
KEY_MAX_AGE_MS = 35 * 24 * 3600 * 1000
KEY_MAX_AHEAD_MS = 24 * 3600 * 1000


async def post_events(request: Request) -> Response:
    ctx = context_of(request)
    app_id = await authenticate(ctx, request)
    if isinstance(app_id, Response):
        return app_id
    limited = rate_limited(ctx, app_id, "event_batches")
    if limited is not None:
        return limited
    received_ms = ctx.clock_ms()
    body, _raw, problem = await read_json_body(request, MAX_BATCH_BYTES)
    if problem is not None:
        return problem
    try:
        envelope = validate_batch_envelope(body)
    except RequestInvalidError as exc:
        return error_response(422, exc.code, exc.message, exc.details)

    # (key, value) per accepted event, encoded as soon as it is checked.
    accepted: list[tuple[bytes, bytes]] = []
    rejected: list[dict[str, object]] = []
    for index, raw in enumerate(envelope.events):
        result = normalise_event(
            raw,
            app_id=app_id,
            sent_at_ms=envelope.sent_at_ms,
            received_at_ms=received_ms,
            min_key_time_ms=received_ms - KEY_MAX_AGE_MS,
            max_key_time_ms=received_ms + KEY_MAX_AHEAD_MS,
        )
        if isinstance(result, Rejection):
            event_id = raw.get("event_id") if isinstance(raw, dict) else None
            rejected.append(
                {
                    "index": index,
                    "event_id": event_id if isinstance(event_id, str) else None,
                    "code": result.code,
                    "message": result.message,
                }
            )
            ctx.metrics.events_rejected.labels(result.code).inc()
        else:
            key = cast(str, result["opportunity_key"])
            accepted.append((key.encode(), encode_event_fields(result)))

    try:
        await ctx.producer.send_all(
            ctx.settings.topics.events, accepted, ctx.settings.produce_timeout_ms / 1000
        )
    except (ProduceTimeoutError, ProduceFailedError) as exc:
        ctx.metrics.event_batches_unconfirmed.inc()
        return error_response(
            503,
            "broker_unavailable",
            f"events not confirmed by the broker, resend the batch: {exc}",
            {"accepted": 0},
            headers={"Retry-After": "1"},
        )
    if accepted:
        ctx.metrics.confirm_events.observe((ctx.clock_ms() - received_ms) / 1000)
    ctx.metrics.events_accepted.inc(len(accepted))
    ctx.metrics.event_batches_acked.inc()
    return json_response({"accepted": len(accepted), "rejected": rejected})
