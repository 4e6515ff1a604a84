"""Resent events whose first send may still land: wait for it, do not produce twice.

When the broker does not confirm a batch in time the gateway answers 503
and the SDK resends the batch. The first copies usually land a moment
later, so producing the resend would put every event on the topic twice.
This process therefore remembers the events of each unconfirmed batch (app,
``event_id`` and what the SDK sent) with the delivery still in flight. A
resent event with the same content does not go to the broker again: the
request waits for the earlier delivery, and only if that was refused is the
event produced anew.

The memory is per process and bounded (oldest forgotten first, entries
expire), and a resend may reach another gateway process; so this makes
duplicates rare rather than impossible, and the dataflow's dedup on
``(app_id, event_id)`` stays the guarantee (``docs/contracts.md`` section 3).
Costs nothing while every batch is confirmed in time: the map stays empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .producer import Delivery

__all__ = ["UnconfirmedSends"]


@dataclass(frozen=True, slots=True)
class _Sent:
    raw: object  # the event as the SDK sent it
    delivery: Delivery
    expires_ms: int


class UnconfirmedSends:
    def __init__(self, ttl_ms: int = 10 * 60 * 1000, max_events: int = 100_000):
        self._ttl_ms = ttl_ms
        self._max_events = max_events
        self._sent: dict[tuple[str, str], _Sent] = {}

    def __len__(self) -> int:
        return len(self._sent)

    def remember(
        self, app_id: str, events: list[Mapping[str, object]], delivery: Delivery, now_ms: int
    ) -> None:
        """``events``: the validated raw events of a batch whose delivery timed out."""
        expires_ms = now_ms + self._ttl_ms
        for raw in events:
            key = (app_id, str(raw["event_id"]))
            self._sent.pop(key, None)  # re-insert at the young end
            self._sent[key] = _Sent(raw, delivery, expires_ms)
        self._forget_old(now_ms)

    def earlier_delivery(
        self, app_id: str, event_id: str, raw: object, now_ms: int
    ) -> Delivery | None:
        """The delivery of an earlier send of this very event, unless it was refused."""
        sent = self._sent.get((app_id, event_id))
        if sent is None:
            return None
        if sent.expires_ms < now_ms or sent.delivery.confirmed is False or sent.raw != raw:
            # Refused or expired: produce it again. Other content: the
            # dataflow must see both copies to dead-letter the conflict.
            return None
        return sent.delivery

    def _forget_old(self, now_ms: int) -> None:
        while self._sent:
            oldest_key = next(iter(self._sent))
            oldest = self._sent[oldest_key]
            if len(self._sent) <= self._max_events and oldest.expires_ms >= now_ms:
                return
            del self._sent[oldest_key]
