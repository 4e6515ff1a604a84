"""What the gateway's in-process catalog reads (gateway/catalog.py): keys, rollouts, switches.

Three plain queries on the gateway's async pool connection (autocommit:
each is a transaction of its own; no session state and no server-side
prepared statements, so they run through pgbouncer in transaction mode).
The tables are owned elsewhere: ``app_keys`` by ``storage.keys``,
``config_snapshots``, ``publish_operations`` and ``degradation_switches``
by ``storage.configs``; this module only reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

__all__ = ["CatalogRows", "ServedRollout", "check_connection", "read_catalog"]

_KEYS_SQL = "SELECT key_hash, app_id FROM app_keys WHERE revoked_at IS NULL"
_DEGRADED_SQL = "SELECT app_id, profile FROM degradation_switches WHERE profile IS NOT NULL"
# The latest operation per app that decides what is served: published
# (everyone gets it), rolling out (a share of rollout buckets gets it, the
# rest the previous version), or rolling back / rolled back / failed (the
# previous version). Pending and validating operations serve nothing yet:
# the operation before them decides.
_ROLLOUTS_SQL = """
SELECT DISTINCT ON (o.app_id) o.app_id, o.state, o.rollout_percent,
       o.version, n.body, n.checksum, o.previous_version, p.body, p.checksum
FROM publish_operations o
JOIN config_snapshots n ON n.app_id = o.app_id AND n.version = o.version
LEFT JOIN config_snapshots p ON p.app_id = o.app_id AND p.version = o.previous_version
WHERE o.state IN ('published', 'rolling_out', 'rolling_back', 'rolled_back', 'failed')
ORDER BY o.app_id, o.id DESC
"""


@dataclass(frozen=True, slots=True)
class ServedRollout:
    """An app's operation that decides what it serves, with both snapshots."""

    app_id: str
    state: str
    rollout_percent: int
    version: int
    body: Mapping[str, Any]
    checksum: str
    previous_version: int | None
    previous_body: Mapping[str, Any] | None
    previous_checksum: str | None


@dataclass(frozen=True, slots=True)
class CatalogRows:
    app_ids_by_key_hash: dict[str, str]  # active (unrevoked) write keys only
    rollouts: list[ServedRollout]  # one per app with something to serve
    degradation_profiles: dict[str, str]  # app -> the profile switched on


async def read_catalog(conn: AsyncConnection[Any]) -> CatalogRows:
    """Everything the catalog serves from, read on one connection."""
    keys = await (await conn.execute(_KEYS_SQL)).fetchall()
    rollouts = await (await conn.execute(_ROLLOUTS_SQL)).fetchall()
    degraded = await (await conn.execute(_DEGRADED_SQL)).fetchall()
    return CatalogRows(
        app_ids_by_key_hash={key_hash: app_id for key_hash, app_id in keys},
        rollouts=[ServedRollout(*row) for row in rollouts],
        degradation_profiles={app_id: profile for app_id, profile in degraded},
    )


async def check_connection(conn: AsyncConnection[Any]) -> None:
    """Raise unless the database answers on ``conn`` (the gateway's readiness check)."""
    await conn.execute("SELECT 1")
