"""Opening Postgres connections the way every process must.

Supabase (and any pgbouncer) in transaction mode forbids server-side
prepared statements and session state across transactions, so every
connection here sets ``prepare_threshold=None`` and code keeps its state
inside one transaction.
"""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from mediation.errors import ServiceError

__all__ = ["DatabaseUnavailableError", "connect", "ensure_database"]


class DatabaseUnavailableError(ServiceError):
    """Postgres could not be reached; retryable."""

    code = "database_unavailable"


def connect(
    database_url: str, *, autocommit: bool = False, timeout_s: int = 5
) -> psycopg.Connection:
    try:
        return psycopg.connect(
            database_url,
            autocommit=autocommit,
            prepare_threshold=None,
            connect_timeout=timeout_s,
            row_factory=tuple_row,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"cannot connect to Postgres: {exc}".strip()) from exc


def ensure_database(admin_url: str, dbname: str) -> bool:
    """Create the database ``dbname`` on the server of ``admin_url`` unless it exists.

    True when it was created now. For the local dev stack; a direct
    connection (``CREATE DATABASE`` cannot run inside a transaction).
    """
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return True
