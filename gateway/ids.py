"""Random bytes for ids on the request path, without a syscall per id.

``os.urandom`` costs a system call (several microseconds) each time; the
gateway needs 20-30 random bytes per request. This pool reads 64 KiB at
once and hands out slices: the same kernel randomness, amortised. One pool
per process, used from the event loop thread only.
"""

from __future__ import annotations

import os

__all__ = ["random_bytes"]

_POOL_BYTES = 64 * 1024


class _Pool:
    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0

    def take(self, count: int) -> bytes:
        end = self._offset + count
        if end > len(self._buffer):
            self._buffer, self._offset, end = os.urandom(_POOL_BYTES), 0, count
        chunk = self._buffer[self._offset : end]
        self._offset = end
        return chunk


_pool = _Pool()


def random_bytes(count: int) -> bytes:
    return _pool.take(count)
