"""``Idempotency-Key`` for ``POST /v1/requests``, stored in Redis.

Per app and key, Redis holds either a lease (the key's request is in
flight) or the finished response, for 24 hours:

- same key, same body, finished -> the stored response, byte for byte, and
  no second opportunity on Kafka;
- same key, other body -> 422 ``idempotency_key_reused``;
- same key still in flight -> 409 ``request_in_flight``.

The guarantee: **at most one 200 per key** (as long as Redis keeps the
entry). A request answers 200 only after it recorded its response in Redis
while the key held its own lease or nothing at all (compare-and-set, one
Lua script); any later request finds that response and replays it. So:

- when the store cannot answer within ``timeout_ms`` (Redis stalled, down,
  or slow) the request gets 503 + ``Retry-After``, never a 200 unguarded;
- the lease is short (``lease_ms``) and renewed by a task while its request
  lives, so a key whose gateway died mid-request is free again within one
  lease, and an answer that was never recorded is never replayed;
- a request whose lease lapsed while it waited on the broker (renewals
  failed) and was taken over by a retry cannot record its answer: it gets
  503 + ``Retry-After`` too, and the next retry replays the other one's. Its
  opportunity may still be on Kafka, undelivered (like any request answered
  503 after its message was sent); an SDK never sees two opportunities for
  one key.
- if recording times out, the script may still have run: the retry then
  replays this answer, or (it did not run) the lease lapses and the retry
  runs for real.

Only successful answers are stored; after an error the lease is released so
the SDK's retry runs for real. ``mediation_idempotency_unavailable`` counts
the 503s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from mediation.errors import InputError

from .ids import random_bytes

__all__ = [
    "IDEMPOTENCY_TTL_S",
    "Claim",
    "IdempotencyStore",
    "InvalidIdempotencyKeyError",
    "Lease",
    "check_idempotency_key",
]

log = logging.getLogger(__name__)

IDEMPOTENCY_TTL_S = 24 * 3600
# Renew a lease this many times per lease length: two renewals may fail (a
# short Redis stall) before it lapses.
_RENEWALS_PER_LEASE = 3
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{8,255}\Z")  # printable ASCII, no spaces
_IN_FLIGHT = b"p"
_DONE = b"d"
# One round trip, atomic: take the lease if the key is free, else say what holds it.
_CLAIM = """
local held = redis.call('get', KEYS[1])
if held then
  return held
end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
_RENEW_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# The answer is recorded over this request's own lease, or over nothing (the
# lease lapsed and nobody took the key): never over another request's lease
# or answer. Recorded means served: at most one answer per key.
_FINISH_IF_OWNER_OR_FREE = """
local held = redis.call('get', KEYS[1])
if held == ARGV[1] or not held then
  redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
_STORE_ERRORS = (RedisError, TimeoutError)


class InvalidIdempotencyKeyError(InputError):
    code = "idempotency_key_invalid"


def check_idempotency_key(key: str) -> None:
    """Refuse keys that are too short, too long, not printable or low-entropy."""
    if not _KEY_PATTERN.match(key):
        raise InvalidIdempotencyKeyError(
            "Idempotency-Key must be 8..255 printable ASCII characters without spaces"
        )
    if len(set(key)) < 6:
        raise InvalidIdempotencyKeyError(
            "Idempotency-Key has too little entropy; use a UUID or 128 random bits"
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming a key: proceed (with a lease), replay, or refuse."""

    kind: str  # "proceed" | "replay" | "conflict" | "in_flight" | "unavailable"
    response: bytes = b""
    lease: Lease | None = None  # with "proceed" only


class IdempotencyStore:
    def __init__(self, client: aioredis.Redis, namespace: str, *, lease_ms: int, timeout_ms: int):
        self._namespace = namespace
        self.lease_ms = lease_ms
        self.timeout_s = timeout_ms / 1000
        # By digest (EVALSHA): the scripts' text is not resent per request.
        self.claim_script = client.register_script(_CLAIM)
        self.renew_script = client.register_script(_RENEW_IF_OWNER)
        self.finish_script = client.register_script(_FINISH_IF_OWNER_OR_FREE)
        self.release_script = client.register_script(_RELEASE_IF_OWNER)

    def _redis_key(self, app_id: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self._namespace}idem:{app_id}:{digest}"

    async def call(self, script: AsyncScript, redis_key: str, *args: bytes | int) -> object:
        """Run one script on the key within the time budget (TimeoutError past it)."""
        async with asyncio.timeout(self.timeout_s):
            return await script(keys=[redis_key], args=args)

    async def claim(self, app_id: str, key: str, body: bytes) -> Claim:
        body_hash = hashlib.sha256(body).hexdigest().encode()
        redis_key = self._redis_key(app_id, key)
        token = _IN_FLIGHT + body_hash + random_bytes(8).hex().encode()
        try:
            held = await self.call(self.claim_script, redis_key, token, self.lease_ms)
        except _STORE_ERRORS as exc:
            # If the script ran after all, its lease lapses unrenewed.
            log.warning("idempotency store did not answer in time: %r", exc)
            return Claim("unavailable")
        if not isinstance(held, bytes):
            return Claim("proceed", lease=Lease(self, redis_key, token))
        state, stored_hash, response = held[:1], held[1:65], held[65:]
        if stored_hash != body_hash:
            return Claim("conflict")
        if state == _IN_FLIGHT:
            return Claim("in_flight")
        return Claim("replay", response)


class Lease:
    """One request's hold on its key, renewed in the background until it ends.

    End it with ``finish`` (200: record the answer) or ``release`` (any
    other answer); ``abandon`` only stops the renewals, as a crash would.
    """

    def __init__(self, store: IdempotencyStore, redis_key: str, token: bytes):
        self._store = store
        self._redis_key = redis_key
        self._token = token
        self._renewals = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        interval_s = self._store.lease_ms / 1000 / _RENEWALS_PER_LEASE
        while True:
            await asyncio.sleep(interval_s)
            try:
                held = await self._store.call(
                    self._store.renew_script, self._redis_key, self._token, self._store.lease_ms
                )
            except _STORE_ERRORS as exc:
                # The next renewal may succeed; if the lease lapses, finish decides.
                log.warning("could not renew an idempotency lease: %r", exc)
                continue
            if not held:
                return  # lapsed and maybe taken over: finish will refuse to record

    def abandon(self) -> None:
        self._renewals.cancel()

    async def finish(self, response: bytes) -> bool:
        """Record the answer; False if it was not recorded (then it must not be served)."""
        self.abandon()
        body_hash = self._token[1:65]
        try:
            recorded = await self._store.call(
                self._store.finish_script,
                self._redis_key,
                self._token,
                _DONE + body_hash + response,
                IDEMPOTENCY_TTL_S,
            )
        except _STORE_ERRORS as exc:
            log.warning("could not record an idempotent response: %r", exc)
            return False
        if not recorded:
            log.warning("an idempotency lease lapsed and was taken over; answer not recorded")
        return bool(recorded)

    async def release(self) -> None:
        """Drop the lease (so the retry runs), if this request still holds it."""
        self.abandon()
        with contextlib.suppress(*_STORE_ERRORS):
            # Not released: it lapses within one lease.
            await self._store.call(self._store.release_script, self._redis_key, self._token)
