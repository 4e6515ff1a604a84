"""Records on their way to the closing step: handed over, not yet applied.

The input watermark lets a partition read to the end of its log follow the
wall clock. That is only safe once what was read from it has reached the
closing step: between the two lie Bytewax's exchange (records go to the
worker that owns their bucket, across threads or, with several processes,
over the network) and its queues, which a saturated CPU drains slowly. A
fixed settle time guesses; these two counters know. Decoding counts the
records it hands over (``sent``), the closing step the ones it applied
(``applied``); their difference is what is still in flight. With several
processes the counters are summed over the cluster
(``dataflows/cluster_clock.py``).
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

    def local(self) -> int:
        sent, applied = self.counts()
        return sent - applied
