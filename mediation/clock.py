"""The wall clock and epoch-millisecond conversions, for the edges only.

The rules never read a clock; the gateway, the worker and the simulator read
this one. Conversions use integer arithmetic: float timestamps can be off
by one millisecond.
"""

from __future__ import annotations

import datetime as dt
import time

__all__ = ["datetime_of_ms", "now_ms"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def datetime_of_ms(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)
