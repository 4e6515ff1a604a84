"""Seeding an app directly: the app row, a write key, and a config published at 100%.

For the demo, the tests and a first install (``mediation seed``): it skips
the staged rollout that ``storage/configs.py`` drives, and says so in the
operation's reason and the audit record. Idempotent: running it again keeps
the app, adds the key if it is new, and publishes a new config version only
when the body changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from mediation.rules.identity import hash_app_key
from storage.audit import record_audit
from storage.configs import config_checksum
from storage.db import connect
from storage.keys import KEY_PREFIX_CHARS

__all__ = ["SeedResult", "seed_app_rows"]


@dataclass(frozen=True, slots=True)
class SeedResult:
    app_id: str
    app_key: str | None  # the raw key when one was added now, else None
    config_version: int
    published_now: bool


def seed_app_rows(
    database_url: str,
    app_id: str,
    config: dict[str, Any],
    app_key: str | None,
    actor: str,
) -> SeedResult:
    """Write the app, its key (when new) and ``config`` published at 100%, in one transaction.

    ``config`` must be valid already (``mediation.sim.seed.seed_app`` checks it).
    """
    checksum = config_checksum(config)
    with connect(database_url) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO apps (app_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (app_id, app_id),
        )
        added_key = None
        if app_key is not None:
            cur = conn.execute(
                "INSERT INTO app_keys (key_hash, app_id, key_prefix) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (hash_app_key(app_key), app_id, app_key[:KEY_PREFIX_CHARS]),
            )
            added_key = app_key if cur.rowcount else None
        row = conn.execute(
            "SELECT s.version, s.checksum FROM publish_operations o JOIN config_snapshots s "
            "ON s.app_id = o.app_id AND s.version = o.version "
            "WHERE o.app_id = %s AND o.state = 'published' ORDER BY o.id DESC LIMIT 1",
            (app_id,),
        ).fetchone()
        if row is not None and row[1] == checksum:
            return SeedResult(app_id, added_key, row[0], False)
        version_row = conn.execute(
            "SELECT coalesce(max(version), 0) + 1 FROM config_snapshots WHERE app_id = %s",
            (app_id,),
        ).fetchone()
        version = int(version_row[0]) if version_row else 1
        conn.execute(
            "INSERT INTO config_snapshots (app_id, version, body, checksum, created_by) "
            "VALUES (%s, %s, %s, %s, %s)",
            (app_id, version, Jsonb(config), checksum, actor),
        )
        op_row = conn.execute(
            "INSERT INTO publish_operations (app_id, version, previous_version, state, "
            "rollout_percent, reason) VALUES (%s, %s, %s, 'published', 100, %s) RETURNING id",
            (app_id, version, row[0] if row else None, "published directly by seed"),
        ).fetchone()
        op_id = op_row[0] if op_row else None
        conn.execute(
            "INSERT INTO publish_transitions (operation_id, from_state, to_state, reason) "
            "VALUES (%s, NULL, 'published', 'published directly by seed')",
            (op_id,),
        )
        record_audit(
            conn,
            actor,
            "config.publish",
            f"app:{app_id}",
            {"version": row[0]} if row else None,
            {"version": version, "checksum": checksum},
        )
        return SeedResult(app_id, added_key, version, True)
