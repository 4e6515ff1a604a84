"""Records on their way to the closing step: handed over, not yet applied.

Between decoding and the closing step lie Bytewax's exchange (records go to
the worker that owns their bucket, across threads or, with several
processes, over the network) and its queues, which a saturated CPU drains
slowly. The input watermark must not move past what has not arrived yet:
decoding counts the records it hands over (``sent``), the closing step the
ones it applied (``applied``), and the watermark releases a value only
once as many have been applied as had been sent when it was computed
(``dataflows/watermark.py``). With several processes the counters are
summed over the cluster (``dataflows/cluster_clock.py``).
"""

from __future__ import annotations

import threading

__all__ = ["InFlight"]


class InFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # Bytewax workers of one process are threads
        self._sent = 0
        self._applied = 0

    def sent(self, records: int) -> None:
        with self._lock:
            self._sent += records

    def applied(self, records: int) -> None:
        with self._lock:
            self._applied += records

    def counts(self) -> tuple[int, int]:
        """(sent, applied) so far, read together."""
        with self._lock:
            return self._sent, self._applied
