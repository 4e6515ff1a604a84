"""Bytewax's Kafka source, telling the input watermark which partitions this process reads.

Bytewax builds a source partition on the worker that owns it, from the
offset in the recovery store (or the beginning of the log). Knowing that
set and those offsets, the watermark can hold until every partition of
this process that has data to read has delivered some of it, instead of
guessing from a timeout (``dataflows/watermark.py``). Given a
``StopSignals``, each partition also ends its input once a stop was
requested (``dataflows/stopping.py``).
"""

from __future__ import annotations

from typing import Any

from bytewax.connectors.kafka import KafkaSource

from .stopping import StopSignals, stoppable
from .watermark import InputWatermark

__all__ = ["TrackedKafkaSource"]


class TrackedKafkaSource(KafkaSource):
    def __init__(
        self,
        *args: Any,
        watermark: InputWatermark,
        stop: StopSignals | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self._watermark = watermark
        self._stop = stop

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> Any:
        part = super().build_part(step_id, for_part, resume_state)
        index, topic = for_part.split("-", 1)  # Bytewax names them "<partition>-<topic>"
        self._watermark.assign((topic, int(index)), resume_state or 0)
        return stoppable(part, self._stop)
