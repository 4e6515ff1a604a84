"""Daily range partitions of the record tables.

Partitions are created ahead by ``mediation partitions`` (run it daily, or
let ``mediation migrate`` create the next days), and on demand by the
worker's sink for any day it is about to write, so a record is never
refused for want of a partition. Which tables: ``mediation/tables.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import psycopg
from psycopg import sql

from mediation.tables import PARTITIONED_TABLES

__all__ = ["PARTITIONED_TABLES", "PARTITION_DDL_LOCK", "ensure_partitions", "partition_name"]

PARTITION_DDL_LOCK = 0x70617274  # "part": serialises partition DDL across workers


def partition_name(table: str, day: dt.date) -> str:
    return f"{table}_{day:%Y%m%d}"


def ensure_partitions(
    conn: psycopg.Connection,
    days: Iterable[dt.date],
    tables: Iterable[str] = PARTITIONED_TABLES,
) -> int:
    """Create any missing partition for ``days``; return how many were created.

    Runs in its own transaction with an advisory lock, so concurrent workers
    do not race on the same DDL.
    """
    wanted = sorted(set(days))
    if not wanted:
        return 0
    tables = tuple(tables)
    created = 0
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_DDL_LOCK,))
        existing = {
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY(%s)",
                (list(tables),),
            )
        }
        for table in tables:
            for day in wanted:
                name = partition_name(table, day)
                if name in existing:
                    continue
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
                    ).format(
                        sql.Identifier(name),
                        sql.Identifier(table),
                        sql.Literal(day),
                        sql.Literal(day + dt.timedelta(days=1)),
                    )
                )
                created += 1
    return created


def days_around(today: dt.date, back: int, ahead: int) -> list[dt.date]:
    return [today + dt.timedelta(days=offset) for offset in range(-back, ahead + 1)]
