"""App write keys: created, listed and revoked, at most two active per app.

Two active keys allow rotation without downtime: create the new key, ship it
in the SDK config, revoke the old one once traffic has moved. Keys are
stored as SHA-256 hashes; the raw key is shown once, at creation. Every
change is written to ``audit_records``. Gateways pick changes up within
their catalog refresh (2 s).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from mediation.errors import RefusedError
from mediation.rules.identity import hash_app_key
from storage.audit import record_audit
from storage.db import connect

__all__ = [
    "KEY_PREFIX_CHARS",
    "MAX_ACTIVE_KEYS",
    "KeyInfo",
    "KeyOperationError",
    "create_key",
    "list_keys",
    "new_app_key",
    "revoke_key",
]

MAX_ACTIVE_KEYS = 2
KEY_PREFIX_CHARS = 12


class KeyOperationError(RefusedError):
    """A key operation was refused; ``code`` is a stable reason."""

    code = "key_operation_refused"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


def new_app_key() -> str:
    return "mk_" + secrets.token_urlsafe(32)


def create_key(database_url: str, app_id: str, actor: str, app_key: str | None = None) -> str:
    """Add a write key (the raw key is returned once); refuse a third active key."""
    raw = app_key or new_app_key()
    with connect(database_url) as conn, conn.transaction():
        app = conn.execute(
            "SELECT app_id FROM apps WHERE app_id = %s FOR UPDATE", (app_id,)
        ).fetchone()
        if app is None:
            raise KeyOperationError("unknown_app", f"app {app_id!r} does not exist")
        active = conn.execute(
            "SELECT count(*) FROM app_keys WHERE app_id = %s AND revoked_at IS NULL", (app_id,)
        ).fetchone()
        if active is not None and active[0] >= MAX_ACTIVE_KEYS:
            raise KeyOperationError(
                "too_many_active_keys",
                f"app {app_id!r} already has {MAX_ACTIVE_KEYS} active keys; revoke one first",
            )
        conn.execute(
            "INSERT INTO app_keys (key_hash, app_id, key_prefix) VALUES (%s, %s, %s)",
            (hash_app_key(raw), app_id, raw[:KEY_PREFIX_CHARS]),
        )
        record_audit(
            conn, actor, "key.create", f"app:{app_id}", after={"prefix": raw[:KEY_PREFIX_CHARS]}
        )
    return raw


def revoke_key(database_url: str, app_id: str, prefix: str, actor: str) -> int:
    """Revoke the active key(s) of ``app_id`` starting with ``prefix``; return how many."""
    if len(prefix) < 8:
        raise KeyOperationError("prefix_too_short", "give at least 8 characters of the key prefix")
    with connect(database_url) as conn, conn.transaction():
        revoked = conn.execute(
            "UPDATE app_keys SET revoked_at = now() WHERE app_id = %s AND revoked_at IS NULL "
            "AND key_prefix LIKE %s RETURNING key_prefix",
            (app_id, _like_prefix(prefix[:KEY_PREFIX_CHARS])),
        ).fetchall()
        if len(revoked) > 1:
            raise KeyOperationError("ambiguous_prefix", f"{prefix!r} matches {len(revoked)} keys")
        if not revoked:
            raise KeyOperationError(
                "unknown_key", f"no active key of {app_id!r} starts with {prefix!r}"
            )
        record_audit(conn, actor, "key.revoke", f"app:{app_id}", after={"prefix": revoked[0][0]})
    return len(revoked)


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching values that start with ``prefix`` literally."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def list_keys(database_url: str, app_id: str) -> list[KeyInfo]:
    with connect(database_url) as conn:
        rows = conn.execute(
            "SELECT key_prefix, created_at, revoked_at FROM app_keys WHERE app_id = %s "
            "ORDER BY created_at",
            (app_id,),
        ).fetchall()
    return [KeyInfo(*row) for row in rows]
