"""ULIDs: 48-bit millisecond timestamp + 80 random bits, Crockford base32.

The gateway mints one ``opportunity_key`` per sync request; its timestamp is
the opportunity's time and therefore its day partition. Pure: the caller
passes the time and the random bytes.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import TypeGuard

from ..errors import InputError
from .records import python_class

__all__ = [
    "ULID_PATTERN",
    "InvalidUlidError",
    "day_of_ms",
    "encode_ulid",
    "is_ulid",
    "ulid_day",
    "ulid_time_ms",
    "ulid_time_ms_unchecked",
]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SHIFTS = tuple(range(125, -1, -5))
_TO_BASE32 = str.maketrans(_ALPHABET, "0123456789ABCDEFGHIJKLMNOPQRSTUV")
# \Z, not $: "$" also matches before a trailing newline.
ULID_PATTERN = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}\Z")
_MAX_TIME_MS = (1 << 48) - 1
_MS_PER_DAY = 86_400_000
_EPOCH_DAY = _dt.date(1970, 1, 1)


@python_class
class InvalidUlidError(InputError):
    """The text is not a canonical (upper-case Crockford) ULID."""

    code = "ulid_invalid"


def encode_ulid(time_ms: int, randomness: bytes) -> str:
    """Encode a ULID from a millisecond timestamp and 10 random bytes."""
    if not 0 <= time_ms <= _MAX_TIME_MS:
        raise InvalidUlidError(f"ULID time {time_ms} is outside 0..2^48-1")
    if len(randomness) != 10:
        raise InvalidUlidError(f"ULID randomness must be 10 bytes, got {len(randomness)}")
    value = (time_ms << 80) | int.from_bytes(randomness, "big")
    # 130 bits as 26 five-bit digits, most significant first (hot path: the
    # gateway mints two per request, so no per-character Python loop).
    return "".join([_ALPHABET[(value >> shift) & 31] for shift in _SHIFTS])


def is_ulid(text: object) -> TypeGuard[str]:
    """True when ``text`` is a canonical ULID string."""
    return isinstance(text, str) and ULID_PATTERN.match(text) is not None


def ulid_time_ms(text: str) -> int:
    """The millisecond timestamp carried by a ULID."""
    if not is_ulid(text):
        raise InvalidUlidError(f"not a canonical ULID: {text[:40]!r}")
    return ulid_time_ms_unchecked(text)


def ulid_time_ms_unchecked(text: str) -> int:
    """``ulid_time_ms`` for text already known to be a ULID (hot paths)."""
    # Crockford digits -> Python's base-32 digits (0-9, A-V), then int(..., 32).
    return int(text[:10].translate(_TO_BASE32), 32)


def ulid_day(text: str) -> _dt.date:
    """The UTC day of a ULID's timestamp: the partition key of its records."""
    return day_of_ms(ulid_time_ms(text))


def day_of_ms(time_ms: int) -> _dt.date:
    """UTC calendar day of an epoch-milliseconds instant."""
    return _EPOCH_DAY + _dt.timedelta(days=time_ms // _MS_PER_DAY)
