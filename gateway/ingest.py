"""``POST /v1/events`` (F): validate each event, produce, ACK what the broker confirmed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from mediation.rules.validation import (
    Rejection,
    accepted_key_times,
    normalise_event,
    validate_batch_envelope,
)
from mediation.rules.waterfall import DegradationProfile, keeps_event
from mediation.settings import Settings
from mediation.wire import encode_event_fields

from .context import context_of
from .errors import REQUEST_REFUSALS, ApiUnavailableError, translated
from .guards import authenticate, check_rate_limit
from .http import json_response, read_json_body
from .producer import Delivery, ProduceFailedError, ProduceTimeoutError

__all__ = ["MAX_BATCH_BYTES", "post_events"]

MAX_BATCH_BYTES = 1024 * 1024


def _kept(
    degradation: tuple[str, DegradationProfile], event: Mapping[str, object], event_id: str
) -> bool:
    share = degradation[1].sample_event_types.get(cast(str, event["type"]))
    # Decided by event_id: every resent copy of an event gets the same answer.
    return share is None or keeps_event(event_id, share)


def _by_generation(
    settings: Settings, messages: list[tuple[bytes, bytes]]
) -> dict[str, list[tuple[bytes, bytes]]]:
    """Events by topic: each goes where its opportunity went (``Settings.topics_for``)."""
    if settings.previous_topic_prefix is None:
        return {settings.topics.events: messages}
    by_topic: dict[str, list[tuple[bytes, bytes]]] = {}
    for message in messages:
        topic = settings.topics_for(message[0].decode()).events
        by_topic.setdefault(topic, []).append(message)
    return by_topic


async def post_events(request: Request) -> Response:
    ctx = context_of(request)
    app_id = await authenticate(ctx, request)
    check_rate_limit(ctx, app_id, "event_batches")
    received_ms = ctx.clock_ms()
    min_key_time_ms, max_key_time_ms = accepted_key_times(received_ms)
    body, _raw = await read_json_body(request, MAX_BATCH_BYTES)
    with translated(REQUEST_REFUSALS):
        envelope = validate_batch_envelope(body)

    # (key, value) per event to produce, encoded as soon as it is checked,
    # and the same events as sent, remembered if the broker is slow.
    to_send: list[tuple[bytes, bytes]] = []
    sent_raw: list[Mapping[str, object]] = []
    earlier: set[Delivery] = set()
    reused = 0
    rejected: list[dict[str, object]] = []
    unconfirmed = ctx.unconfirmed
    degradation = ctx.catalog.degradation(app_id)  # None unless an operator switched one on
    for index, raw in enumerate(envelope.events):
        result = normalise_event(
            raw,
            app_id=app_id,
            sent_at_ms=envelope.sent_at_ms,
            received_at_ms=received_ms,
            min_key_time_ms=min_key_time_ms,
            max_key_time_ms=max_key_time_ms,
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
            continue
        event_id = cast(str, result["event_id"])
        if degradation is not None and not _kept(degradation, result, event_id):
            name, _profile = degradation
            rejected.append(
                {
                    "index": index,
                    "event_id": event_id,
                    "code": "sampled_out",
                    "message": f"not stored: degradation profile {name!r} samples "
                    f"{result['type']} events; do not resend",
                }
            )
            ctx.metrics.events_sampled_out.labels(result["type"]).inc()
            continue
        if unconfirmed:  # empty unless the broker was slow lately
            delivery = unconfirmed.earlier_delivery(app_id, event_id, raw, received_ms)
            if delivery is not None:
                earlier.add(delivery)
                reused += 1
                continue  # ACKed once that earlier send is confirmed
        key = cast(str, result["opportunity_key"])
        to_send.append((key.encode(), encode_event_fields(result)))
        sent_raw.append(cast(Mapping[str, object], raw))  # a dict: it passed validation

    timeout_s = ctx.settings.produce_timeout_ms / 1000
    try:
        try:
            for topic, messages in _by_generation(ctx.settings, to_send).items():
                await ctx.producer.send_all(topic, messages, timeout_s)
        except ProduceTimeoutError as exc:
            unconfirmed.remember(app_id, sent_raw, exc.delivery, received_ms)
            raise
        for delivery in earlier:
            await delivery.wait(timeout_s)
    except (ProduceTimeoutError, ProduceFailedError) as exc:
        ctx.metrics.event_batches_unconfirmed.inc()
        raise ApiUnavailableError(
            503,
            "broker_unavailable",
            f"events not confirmed by the broker, resend the batch: {exc}",
            {"accepted": 0},
            headers={"Retry-After": "1"},
        ) from exc
    accepted = len(envelope.events) - len(rejected)
    if to_send:
        ctx.metrics.confirm_events.observe((ctx.clock_ms() - received_ms) / 1000)
    ctx.metrics.events_accepted.inc(accepted)
    if reused:
        ctx.metrics.events_resent_not_reproduced.inc(reused)
    ctx.metrics.event_batches_acked.inc()
    return json_response({"accepted": accepted, "rejected": rejected})
