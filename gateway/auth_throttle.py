"""A budget of failed authentications, per client address and for the whole process.

Guessing a write key or the admin token takes many failures; serving a
valid key takes none. So only failures are counted, in token buckets of
failures: each client address has one (``PER_ADDRESS``), and the process
has one for all addresses together (``OVERALL``), for guessing spread over
many addresses.

- An address whose own bucket is empty is refused before its credentials
  are even looked at, valid or not, until a failure's worth has refilled:
  answering a throttled guess with "valid" or "invalid" would let the
  guessing go on at full speed.
- While the overall bucket is empty, only addresses that failed recently
  (their bucket is not full) are refused. An address with no recent
  failure is never refused, so valid keys from clean addresses keep being
  served through any guessing elsewhere.

The budget is in process memory: each gateway process has its own, so a
fleet of N processes allows N times the rates (they are sized for that).
Addresses are forgotten once their bucket has refilled; at most
``max_addresses`` are remembered (the least recently failed go first,
still covered by the overall bucket). Pure: the time is an argument.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["OVERALL", "PER_ADDRESS", "AuthFailureBudget", "BucketSize", "Refusal"]


@dataclass(frozen=True, slots=True)
class BucketSize:
    """``burst`` failures at once, then ``per_s`` failures a second."""

    burst: int
    per_s: float


# No SDK or operator fails this often by mistake: a mistyped token is a
# handful of failures, and a revoked key in an old build fails once per
# request from each device, rarely twice a second from one address.
PER_ADDRESS = BucketSize(burst=20, per_s=1.0)
OVERALL = BucketSize(burst=500, per_s=50.0)


@dataclass(frozen=True, slots=True)
class Refusal:
    scope: str  # "address" or "overall": which budget is spent
    retry_after_s: int


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_s: float

    def refill(self, size: BucketSize, now_s: float) -> None:
        elapsed = max(0.0, now_s - self.at_s)
        self.tokens = min(float(size.burst), self.tokens + elapsed * size.per_s)
        self.at_s = max(self.at_s, now_s)

    def wait_s(self, size: BucketSize) -> int:
        """Whole seconds until one failure's worth is back (at least 1)."""
        return max(1, math.ceil((1.0 - self.tokens) / size.per_s))


class AuthFailureBudget:
    def __init__(
        self,
        per_address: BucketSize = PER_ADDRESS,
        overall: BucketSize = OVERALL,
        max_addresses: int = 10_000,
    ):
        self._per_address = per_address
        self._overall_size = overall
        self._overall = _Bucket(float(overall.burst), 0.0)
        self._max_addresses = max_addresses
        # address -> its bucket, least recently failed first
        self._addresses: OrderedDict[str, _Bucket] = OrderedDict()

    def refusal(self, address: str, now_s: float) -> Refusal | None:
        """Why ``address`` may not try to authenticate now, or None when it may."""
        bucket = self._addresses.get(address)
        if bucket is None:
            return None  # no recent failure: never refused
        bucket.refill(self._per_address, now_s)
        if bucket.tokens >= self._per_address.burst:
            del self._addresses[address]  # refilled: forgotten
            return None
        if bucket.tokens < 1.0:
            return Refusal("address", bucket.wait_s(self._per_address))
        self._overall.refill(self._overall_size, now_s)
        if self._overall.tokens < 1.0:
            return Refusal("overall", self._overall.wait_s(self._overall_size))
        return None

    def record_failure(self, address: str, now_s: float) -> None:
        """Spend one failure from ``address``'s budget and the overall one."""
        bucket = self._addresses.pop(address, None)
        if bucket is None:
            bucket = _Bucket(float(self._per_address.burst), now_s)
            while len(self._addresses) >= self._max_addresses:
                self._addresses.popitem(last=False)
        bucket.refill(self._per_address, now_s)
        bucket.tokens = max(0.0, bucket.tokens - 1.0)
        self._addresses[address] = bucket  # now the most recently failed
        self._overall.refill(self._overall_size, now_s)
        self._overall.tokens = max(0.0, self._overall.tokens - 1.0)

    def remembered(self) -> int:
        """How many addresses have a bucket (bounded by ``max_addresses``)."""
        return len(self._addresses)
