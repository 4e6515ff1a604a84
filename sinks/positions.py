"""The ``worker_positions`` table: each input partition's safe restart offsets.

Owner of that table. A ``PositionMark`` comes out of the closing step
(``dataflows/positions.py`` says how it is computed) and is recorded by
``sinks/pipelined.py`` once every write before it is committed; a worker
process reads the table when it starts a partition its recovery store
knows nothing of (``dataflows/source.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psycopg

__all__ = ["PositionMark", "read_positions", "record_positions"]


@dataclass(frozen=True, slots=True)
class PositionMark:
    """A partition's safe restart offsets: re-reading from them loses nothing."""

    partition: int
    offsets: Mapping[str, int]  # topic -> offset


def record_positions(conn: psycopg.Connection, marks: Iterable[PositionMark]) -> None:
    """Upsert the marks, the latest of a topic partition winning (one transaction)."""
    latest: dict[tuple[str, int], int] = {}
    for mark in marks:
        for topic, offset in mark.offsets.items():
            latest[(topic, mark.partition)] = offset
    if not latest:
        return
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO worker_positions (topic, partition, next_offset) VALUES (%s, %s, %s) "
            "ON CONFLICT (topic, partition) DO UPDATE "
            "SET next_offset = EXCLUDED.next_offset, updated_at = now()",
            [(topic, partition, offset) for (topic, partition), offset in sorted(latest.items())],
        )


def read_positions(conn: psycopg.Connection, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> safe restart offset, for the given topics."""
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM worker_positions WHERE topic = ANY(%s)",
        (list(topics),),
    ).fetchall()
    return {(topic, partition): offset for topic, partition, offset in rows}
