"""An asyncio face on confluent-kafka's producer.

``send_all`` resolves once the broker confirmed *every* message (with
``acks=all`` and idempotence on, that is the durability an ACK promises) or
raises ``ProduceTimeoutError``/``ProduceFailedError``. Delivery callbacks
run on a dedicated poll thread and hand results to the event loop with
``call_soon_threadsafe``; a batch shares one future and one counter, so a
500-event batch costs one loop wake-up, not 500.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Producer

__all__ = ["AsyncProducer", "Delivery", "ProduceFailedError", "ProduceTimeoutError"]

log = logging.getLogger(__name__)


class ProduceTimeoutError(TimeoutError):
    """The broker did not confirm in time; the client should retry later.

    ``delivery`` is the batch still in flight: it may yet be confirmed, and
    a resend of the same events can wait for it instead of producing them
    again (``gateway/resends.py``).
    """

    def __init__(self, message: str, delivery: Delivery):
        super().__init__(message)
        self.delivery = delivery


class ProduceFailedError(RuntimeError):
    """The broker refused a message, or the local queue is full; retryable."""


class Delivery:
    """The broker's verdict on one batch: pending, confirmed or refused."""

    __slots__ = ("confirmed", "error", "future", "loop", "remaining", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int):
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = count
        self.error: KafkaError | None = None
        # None while pending; set on the event loop once every report is in.
        self.confirmed: bool | None = None
        self.waiters: list[asyncio.Future[None]] = []

    def on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        # Runs on the poll thread; only this thread touches `remaining`.
        if err is not None and self.error is None:
            self.error = err
        self.remaining -= 1
        if self.remaining == 0 and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        self.confirmed = self.error is None
        for future in (self.future, *self.waiters):
            if future.done():
                continue
            if self.confirmed:
                future.set_result(None)
            else:
                future.set_exception(ProduceFailedError(f"broker refused: {self.error}"))
        self.waiters.clear()

    async def wait(self, timeout_s: float) -> None:
        """Wait (again) for the verdict: return once confirmed, raise otherwise."""
        if self.confirmed is None:
            future = self.loop.create_future()
            self.waiters.append(future)
            try:
                async with asyncio.timeout(timeout_s):
                    await future
            except TimeoutError:
                raise ProduceTimeoutError(
                    f"broker did not confirm an earlier send within {timeout_s:.1f}s", self
                ) from None
        elif not self.confirmed:
            raise ProduceFailedError(f"broker refused: {self.error}")


class AsyncProducer:
    def __init__(self, bootstrap_servers: str, extra_config: dict[str, object] | None = None):
        config: dict[str, object] = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "batch.num.messages": 1000,
            "queue.buffering.max.messages": 200_000,
            # Keep retrying inside librdkafka for a while; the HTTP caller
            # stops waiting after its own timeout and answers 503.
            "message.timeout.ms": 30_000,
        }
        config.update(extra_config or {})
        self._producer = Producer(config)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)

    async def send_all(
        self, topic: str, messages: Sequence[tuple[bytes, bytes]], timeout_s: float
    ) -> None:
        """Produce ``(key, value)`` pairs to ``topic``; return once all are confirmed."""
        if not messages:
            return
        loop = asyncio.get_running_loop()
        batch = Delivery(loop, len(messages))
        produce = self._producer.produce
        on_delivery = batch.on_delivery
        for index, (key, value) in enumerate(messages):
            try:
                produce(topic, value, key, on_delivery=on_delivery)
            except (BufferError, KafkaException) as exc:
                # Messages already queued may still be delivered: the client's
                # resend is deduplicated downstream.
                raise ProduceFailedError(
                    f"could not queue message {index} of {len(messages)}: {exc}"
                ) from exc
        try:
            # On timeout the batch future is cancelled; the messages may still
            # land, and the delivery still records the verdict when it comes.
            async with asyncio.timeout(timeout_s):
                await batch.future
        except TimeoutError:
            raise ProduceTimeoutError(
                f"broker did not confirm {len(messages)} message(s) within {timeout_s:.1f}s",
                batch,
            ) from None

    def ready(self, timeout_s: float = 2.0) -> bool:
        try:
            self._producer.list_topics(timeout=timeout_s)
        except KafkaException:
            return False
        return True

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush what is queued, stop polling; return messages left unflushed."""
        # Stop the poll thread first so delivery callbacks run on one thread only.
        self._stopping.set()
        self._thread.join()
        left = self._producer.flush(timeout_s)
        if left:
            log.warning("producer closed with %d message(s) unconfirmed", left)
        return int(left)
