"""Which days of the record tables left Postgres for cold storage, from ``tiering_catalog``.

The tiering job writes the catalog (``storage/tier_job.py``, and
``storage/lifecycle.py`` for deletions); replay and the sink read it here
to know which days to read from Parquet, and which are gone for good.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from mediation.rules.replay import Selection
from mediation.tables import REPLAYED_TABLES

__all__ = ["TieredDays"]


@dataclass(frozen=True)
class TieredDays:
    """Per (table, day), from ``tiering_catalog``: dropped from Postgres, or deleted for good.

    Of the replayed tables unless told which (the report reads its rollups').
    """

    dropped: frozenset[tuple[str, dt.date]]
    deleted: frozenset[tuple[str, dt.date]]

    @classmethod
    def read(cls, conn: psycopg.Connection, days: Iterable[dt.date]) -> TieredDays:
        return cls._of(conn, "day = ANY(%s)", (list(days),))

    @classmethod
    def between(
        cls,
        conn: psycopg.Connection,
        first: dt.date,
        last: dt.date,
        tables: Iterable[str] = REPLAYED_TABLES,
    ) -> TieredDays:
        """The days from ``first`` to ``last``: a range over centuries is one index scan."""
        return cls._of(conn, "day BETWEEN %s AND %s", (first, last), tables)

    @classmethod
    def _of(
        cls,
        conn: psycopg.Connection,
        days: str,
        params: tuple[object, ...],
        tables: Iterable[str] = REPLAYED_TABLES,
    ) -> TieredDays:
        rows = conn.execute(
            "SELECT table_name, day, deleted_at IS NOT NULL FROM tiering_catalog "
            f"WHERE dropped_at IS NOT NULL AND table_name = ANY(%s) AND {days}",
            (list(tables), *params),
        ).fetchall()
        return cls(
            frozenset((str(table), day) for table, day, deleted in rows if not deleted),
            frozenset((str(table), day) for table, day, deleted in rows if deleted),
        )

    def deleted_days(self, selection: Selection) -> list[dt.date]:
        """Days of the selection whose cold records were deleted by retention."""
        first, last = selection.day_bounds()
        touched = None if selection.is_range else set(selection.days())
        return sorted(
            {
                day
                for _table, day in self.deleted
                if first <= day <= last and (touched is None or day in touched)
            }
        )
