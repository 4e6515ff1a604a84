"""Ordered, idempotent schema migrations from ``sql/``.

The migrations are package data (``mediation.resources.SQL``): the
repository's ``sql/`` in a checkout, the copy inside the installed package
otherwise. Each file ``sql/NNNN_name.sql`` is applied in its own
transaction that first takes a transaction-scoped advisory lock, so two
processes racing to migrate serialise, and the lock never outlives the
transaction (which is what a transaction-mode pooler requires). Applied
files are recorded with their checksum; an applied file whose text later
changed is an error, because the database no longer matches the
repository.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable

import psycopg

from mediation.errors import ServiceError
from mediation.resources import SQL

from .db import connect

__all__ = ["SQL_DIR", "Migration", "MigrationError", "applied_versions", "migrate", "pending"]

log = logging.getLogger(__name__)

SQL_DIR: Traversable = SQL
_MIGRATION_NAME = re.compile(r"[0-9]{4}_.*\.sql")
# Any constant shared by all processes of this project; "medi" in ASCII.
_ADVISORY_LOCK_KEY = 0x6D656469

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(ServiceError):
    """The database and the repository's migrations disagree."""

    code = "migration_failed"


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    path: Traversable
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(sql_dir: Traversable = SQL_DIR) -> list[Migration]:
    migrations = []
    found = sql_dir.iterdir() if sql_dir.is_dir() else iter(())
    paths = [p for p in found if _MIGRATION_NAME.fullmatch(p.name)]
    for path in sorted(paths, key=lambda p: p.name):
        version = path.name.removesuffix(".sql")
        migrations.append(Migration(version, path, path.read_text(encoding="utf-8")))
    if not migrations:
        raise MigrationError(f"no migrations found in {sql_dir}")
    return migrations


def applied_versions(conn: psycopg.Connection) -> dict[str, str]:
    with conn.transaction():
        # Locked: concurrent CREATE TABLE IF NOT EXISTS can still collide.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
        conn.execute(_CREATE_TABLE)
        rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {version: checksum for version, checksum in rows}


def pending(database_url: str, sql_dir: Traversable = SQL_DIR) -> list[Migration]:
    with connect(database_url) as conn:
        applied = applied_versions(conn)
    return [m for m in load_migrations(sql_dir) if m.version not in applied]


def migrate(database_url: str, sql_dir: Traversable = SQL_DIR) -> list[str]:
    """Apply every pending migration; return the versions applied now."""
    applied_now: list[str] = []
    with connect(database_url) as conn:
        applied_versions(conn)  # creates the bookkeeping table
        for migration in load_migrations(sql_dir):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
                row = conn.execute(
                    "SELECT checksum FROM schema_migrations WHERE version = %s",
                    (migration.version,),
                ).fetchone()
                if row is not None:
                    if row[0] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version} was applied with checksum "
                            f"{row[0][:12]} but {migration.path.name} now has "
                            f"{migration.checksum[:12]}; add a new migration instead of "
                            "editing an applied one"
                        )
                    continue
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                    (migration.version, migration.checksum),
                )
                applied_now.append(migration.version)
                log.info("applied migration %s", migration.version)
    return applied_now
