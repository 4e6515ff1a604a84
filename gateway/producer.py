"""An asyncio face on confluent-kafka's producer.

``send_all`` resolves once the broker confirmed *every* message (with
``acks=all`` and idempotence on, that is the durability an ACK promises) or
raises ``ProduceTimeoutError``/``ProduceFailedError``. Delivery callbacks
run on a dedicated poll thread and hand results to the event loop with
``call_soon_threadsafe``; a batch shares one future and one counter, so a
500-event batch costs one loop wake-up, not 500.

A message that timed out (a broker outage longer than ``message.timeout.ms``)
makes an idempotent producer bump its epoch, which a broker may answer by
fencing it (``PRODUCER_FENCED`` on every later send), and a fenced or
fatally failed producer never recovers. So on such a report the poll
thread retires the producer: a fresh one takes every new send, the old
one's queue is purged (its batches are reported refused, so their resends
are produced anew) and it is polled until its last report is in.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Producer

from mediation.errors import ServiceError
from mediation.topics import producer_config

__all__ = ["AsyncProducer", "Delivery", "ProduceFailedError", "ProduceTimeoutError"]

log = logging.getLogger(__name__)

# Delivery errors after which a producer never sends again: an idempotent
# producer bumps its epoch after a timeout, and may then be fenced.
_RETIRING_ERRORS = frozenset({KafkaError._MSG_TIMED_OUT, KafkaError.PRODUCER_FENCED})


class ProduceTimeoutError(ServiceError, TimeoutError):
    """The broker did not confirm in time; the client should retry later.

    ``delivery`` is the batch still in flight: it may yet be confirmed, and
    a resend of the same events can wait for it instead of producing them
    again (``gateway/resends.py``).
    """

    code = "produce_timeout"

    def __init__(self, message: str, delivery: Delivery):
        super().__init__(message)
        self.delivery = delivery


class ProduceFailedError(ServiceError):
    """The broker refused a message, or the local queue is full; retryable."""

    code = "produce_failed"


class Delivery:
    """The broker's verdict on one batch: pending, confirmed or refused."""

    __slots__ = ("confirmed", "error", "future", "loop", "on_error", "remaining", "waiters")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        count: int,
        on_error: Callable[[KafkaError], None] | None = None,
    ):
        self.loop = loop
        self.on_error = on_error
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = count
        self.error: KafkaError | None = None
        # None while pending; set on the event loop once every report is in.
        self.confirmed: bool | None = None
        self.waiters: list[asyncio.Future[None]] = []

    def on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        # Runs on the poll thread; only this thread touches `remaining`.
        if err is not None:
            if self.error is None:
                self.error = err
            if self.on_error is not None:
                self.on_error(err)
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
        # The project's one partitioner (co-partitioned topics: mediation/topics.py).
        config = producer_config(bootstrap_servers)
        config |= {
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
        self._config = config
        self._producer = Producer(config)
        self._retire = threading.Event()  # set on the poll thread by a delivery report
        self._retired: list[Producer] = []  # polled until their last report is in
        self.replacements = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._thread.start()

    def _on_delivery_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() in _RETIRING_ERRORS:
            self._retire.set()

    def _poll_loop(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)
            if self._retire.is_set():
                self._replace()
            for old in list(self._retired):
                old.poll(0)
                if len(old) == 0:
                    self._retired.remove(old)

    def _replace(self) -> None:
        """On the poll thread: new sends go to a fresh producer; the old one's queue is failed."""
        self._retire.clear()
        old, self._producer = self._producer, Producer(self._config)
        self.replacements += 1
        log.warning(
            "Kafka producer retired after a timed-out or fenced send; a fresh one took over"
        )
        old.purge(in_queue=True, in_flight=False)  # queued batches are reported refused
        self._retired.append(old)

    async def send_all(
        self, topic: str, messages: Sequence[tuple[bytes, bytes]], timeout_s: float
    ) -> None:
        """Produce ``(key, value)`` pairs to ``topic``; return once all are confirmed."""
        if not messages:
            return
        loop = asyncio.get_running_loop()
        batch = Delivery(loop, len(messages), self._on_delivery_error)
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
        for old in self._retired:  # reports still owed by retired producers
            left += old.flush(1.0)
        if left:
            log.warning("producer closed with %d message(s) unconfirmed", left)
        return int(left)
