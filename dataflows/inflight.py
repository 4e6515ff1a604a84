"""Knowing when what was read has reached the closing step: batch markers.

Between decoding and the closing step lie Bytewax's exchange (records go to
the worker that owns their bucket, across threads or, with several
processes, over the network) and its queues, which a saturated CPU drains
slowly. The input watermark must not move past records that have not
arrived: their opportunities would close without them.

Counting records cannot tell which ones are still queued (records applied
quickly on one worker make up for older ones queued for another), so every
input batch is followed by markers: after decoding a batch, this process
issues it a sequence number and sends one ``Marker`` to every bucket the
batch has records for, keyed like those records. A marker travels the same
channel as the records before it, so when the closing step applies it,
that bucket has all of the batch's records. A batch is complete when all of
its markers are applied; the watermark releases a value only once every
batch issued before the value was computed is complete
(``dataflows/watermark.py``).

A marker applied by another process is acknowledged through Redis
(``dataflows/cluster_clock.py`` relays its receipt; receipts are idempotent,
so a relay retried after a lost reply cannot complete a batch early, nor
lose one). Sequence numbers belong to
one run of one process (``sender`` carries a random boot id), so markers of
an earlier run, replayed after a restart, are ignored.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["DeliveryLedger", "Marker"]


@dataclass(frozen=True, slots=True)
class Marker:
    """Follows one input batch's records to one bucket."""

    sender: str  # "<process index>:<boot id>"
    seq: int
    bucket: str

    @property
    def receipt(self) -> str:
        """How its sender recognises it: acknowledging one twice changes nothing."""
        return f"{self.seq}|{self.bucket}"


class DeliveryLedger:
    def __init__(self, process_index: int = 0):
        self.sender = f"{process_index}:{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()  # Bytewax workers of one process are threads
        self._issued = 0
        self._outstanding: dict[int, set[str]] = {}  # seq -> buckets whose marker is due
        self._remote: defaultdict[str, set[str]] = defaultdict(set)  # sender -> receipts

    def issue(self, buckets: Iterable[str]) -> list[tuple[str, Marker]]:
        """Number a decoded batch; the markers to send after its records."""
        keys = set(buckets)
        with self._lock:
            self._issued += 1
            seq = self._issued
            if keys:
                self._outstanding[seq] = set(keys)
        return [(key, Marker(self.sender, seq, key)) for key in keys]

    def applied(self, marker: Marker) -> None:
        """The closing step applied ``marker`` (on this process)."""
        if marker.sender == self.sender:
            self.acknowledge([marker.receipt])
            return
        with self._lock:
            self._remote[marker.sender].add(marker.receipt)

    def acknowledge(self, receipts: Iterable[str]) -> None:
        """Markers of this process's batches applied (here, or relayed from elsewhere).

        Idempotent: a receipt seen before, or of an earlier run, changes nothing.
        """
        with self._lock:
            for receipt in receipts:
                seq_text, _, bucket = receipt.partition("|")
                seq = int(seq_text)
                due = self._outstanding.get(seq)
                if due is None:
                    continue
                due.discard(bucket)
                if not due:
                    del self._outstanding[seq]

    def owe(self, sender: str, receipts: Iterable[str]) -> None:
        """Put back receipts that could not be relayed."""
        with self._lock:
            self._remote[sender].update(receipts)

    def take_remote(self) -> dict[str, set[str]]:
        """Receipts owed to other processes, handed over once."""
        with self._lock:
            remote, self._remote = self._remote, defaultdict(set)
        return dict(remote)

    def outstanding(self) -> int:
        """Batches issued whose markers are not all applied yet."""
        with self._lock:
            return len(self._outstanding)

    def progress(self) -> tuple[int, int]:
        """(batches issued, every batch up to this one complete)."""
        with self._lock:
            issued = self._issued
            complete = min(self._outstanding) - 1 if self._outstanding else issued
        return issued, complete
