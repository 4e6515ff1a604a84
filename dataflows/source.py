"""Bytewax's Kafka source, reading only the partitions this process owns.

A worker process owns a set of partition numbers (``--member i/N`` or
``--partitions``; docs/architecture.md): it reads partition p of both
input topics, and nothing else. ``list_parts`` lists only those, so this
process's one Bytewax worker builds exactly them; a part the recovery
store still holds for a partition no longer owned (a store of another
layout) is built as an empty part that ends at once, and never read.

Where a part starts: its offset in the recovery store (Bytewax's
``resume_state``); with none (a partition new to this process: rescaling,
or a lost store), its safe restart offset from ``worker_positions``
(``sinks/positions.py``); with neither, the beginning of the log.

Knowing the parts built and their offsets, the watermark can hold until
every partition of this process that has data to read has delivered some
of it (``dataflows/watermark.py``). Given a ``StopSignals``, each part also
ends its input once a stop was requested (``dataflows/stopping.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from bytewax.connectors.kafka import KafkaSource
from bytewax.inputs import StatefulSourcePartition

from .stopping import StopSignals, stoppable
from .watermark import InputWatermark, PartitionKey

__all__ = ["OwnedKafkaSource"]

log = logging.getLogger(__name__)


class _NotOwned(StatefulSourcePartition[Any, int | None]):
    """A part of a partition this process does not own: ends at once, keeps its state."""

    def __init__(self, resume_state: int | None):
        self._resume_state = resume_state

    def next_batch(self) -> list[Any]:
        raise StopIteration

    def snapshot(self) -> int | None:
        return self._resume_state


class OwnedKafkaSource(KafkaSource):
    def __init__(
        self,
        *args: Any,
        owned: Collection[int],
        watermark: InputWatermark,
        positions: Mapping[PartitionKey, int] | None = None,
        stop: StopSignals | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self._owned = frozenset(owned)
        self._watermark = watermark
        self._positions = positions or {}
        self._stop = stop

    def list_parts(self) -> list[str]:
        # Bytewax names them "<partition>-<topic>".
        return [part for part in super().list_parts() if int(part.split("-", 1)[0]) in self._owned]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> Any:
        index, topic = for_part.split("-", 1)
        partition = int(index)
        if partition not in self._owned:
            return _NotOwned(resume_state)
        start = resume_state
        if start is None:
            start = self._positions.get((topic, partition))
            if start is not None:
                log.info("partition %s of %s starts at its safe offset %d", partition, topic, start)
        part = super().build_part(step_id, for_part, start)
        self._watermark.assign((topic, partition), start or 0)
        return stoppable(part, self._stop)
