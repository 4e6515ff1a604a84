"""``Idempotency-Key`` for ``POST /v1/requests``, stored in Redis.

Per app and key, Redis holds either an in-flight marker (a short lease) or
the finished response, for 24 hours:

- same key, same body, finished -> the stored response, byte for byte, and
  no second opportunity on Kafka;
- same key, other body -> 422 ``idempotency_key_reused``;
- same key still in flight -> 409 ``request_in_flight``.

Only successful answers are stored; after an error (e.g. 503) the lease is
released so the SDK's retry runs for real. When Redis is unreachable the
request is still served, without the replay protection (a retry may then
mint a second opportunity); ``mediation_idempotency_unavailable`` counts
those requests.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .ids import random_bytes

__all__ = [
    "IDEMPOTENCY_TTL_S",
    "Claim",
    "IdempotencyStore",
    "InvalidIdempotencyKeyError",
    "check_idempotency_key",
]

log = logging.getLogger(__name__)

IDEMPOTENCY_TTL_S = 24 * 3600
IN_FLIGHT_LEASE_MS = 30_000
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{8,255}\Z")  # printable ASCII, no spaces
_IN_FLIGHT = b"p"
_DONE = b"d"
# Compare-and-set / compare-and-delete: a request whose lease expired (it
# stalled past IN_FLIGHT_LEASE_MS) must not touch the next holder's entry.
_FINISH_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return false
"""
_RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class InvalidIdempotencyKeyError(ValueError):
    pass


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
    """The outcome of claiming a key: proceed, replay, or refuse."""

    kind: str  # "proceed" | "replay" | "conflict" | "in_flight" | "unavailable"
    response: bytes = b""
    # With "proceed": this request's lease; only its holder may finish or release it.
    token: bytes = b""


class IdempotencyStore:
    def __init__(self, client: aioredis.Redis, namespace: str):
        self._redis = client
        self._namespace = namespace

    def _redis_key(self, app_id: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self._namespace}idem:{app_id}:{digest}"

    async def claim(self, app_id: str, key: str, body: bytes) -> Claim:
        body_hash = hashlib.sha256(body).hexdigest().encode()
        redis_key = self._redis_key(app_id, key)
        lease = _IN_FLIGHT + body_hash + random_bytes(8).hex().encode()
        stored: bytes | None = None
        try:
            # Two rounds: the entry may expire between the SET and the GET.
            for _round in range(2):
                if await self._redis.set(redis_key, lease, nx=True, px=IN_FLIGHT_LEASE_MS):
                    return Claim("proceed", token=lease)
                value = await self._redis.get(redis_key)
                stored = value if isinstance(value, bytes) else None
                if stored is not None:
                    break
        except RedisError as exc:
            log.warning("idempotency store unavailable, serving without it: %s", exc)
            return Claim("unavailable")
        if stored is None:
            return Claim("in_flight")
        state, stored_hash, response = stored[:1], stored[1:65], stored[65:]
        if stored_hash != body_hash:
            return Claim("conflict")
        if state == _IN_FLIGHT:
            return Claim("in_flight")
        return Claim("replay", response)

    async def finish(
        self, app_id: str, key: str, body: bytes, response: bytes, lease: bytes
    ) -> None:
        """Store the answer, if this request still holds the lease."""
        body_hash = hashlib.sha256(body).hexdigest().encode()
        try:
            await self._redis.eval(
                _FINISH_IF_OWNER,
                1,
                self._redis_key(app_id, key),
                lease,
                _DONE + body_hash + response,
                IDEMPOTENCY_TTL_S,
            )
        except RedisError as exc:
            log.warning("could not store idempotent response: %s", exc)

    async def release(self, app_id: str, key: str, lease: bytes) -> None:
        """Drop the lease (so the retry runs), if this request still holds it."""
        try:
            await self._redis.eval(_RELEASE_IF_OWNER, 1, self._redis_key(app_id, key), lease)
        except RedisError as exc:
            log.warning("could not release idempotency lease: %s", exc)
