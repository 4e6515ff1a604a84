"""Demo data: one app, its write key, and a published config.

Idempotent: running it again keeps the app, adds the key if it is new, and
publishes a new config version only when the body changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from mediation.rules.identity import hash_app_key
from mediation.rules.waterfall import parse_config
from storage.audit import record_audit
from storage.configs import config_checksum
from storage.db import connect
from storage.keys import KEY_PREFIX_CHARS, new_app_key

__all__ = ["SeedResult", "demo_config", "new_app_key", "seed_app"]


def demo_config(closure_window_ms: int = 30 * 60 * 1000, grace_ms: int = 30_000) -> dict[str, Any]:
    """Three placements, four sources, targeting that makes some no-fill."""
    return {
        "closure_window_ms": closure_window_ms,
        "grace_ms": grace_ms,
        "skew_tolerance_ms": 5 * 60 * 1000,
        "max_waterfall_depth": 3,
        "placements": {
            "interstitial_main": {
                "waterfall": [
                    {
                        "source_id": "net_alpha",
                        "floor_micros": 2_500_000,
                        "timeout_ms": 2000,
                        "countries": ["US", "CA", "GB"],
                    },
                    {"source_id": "net_beta", "floor_micros": 1_200_000, "timeout_ms": 1500},
                    {"source_id": "net_gamma", "floor_micros": 400_000, "timeout_ms": 1000},
                    {"source_id": "net_delta", "floor_micros": 100_000, "timeout_ms": 1000},
                ]
            },
            "rewarded_main": {
                "waterfall": [
                    {
                        "source_id": "net_beta",
                        "floor_micros": 3_000_000,
                        "timeout_ms": 2500,
                        "os": ["ios"],
                    },
                    {"source_id": "net_alpha", "floor_micros": 2_000_000, "timeout_ms": 2500},
                ]
            },
            "banner_home": {
                "waterfall": [
                    {
                        "source_id": "net_gamma",
                        "floor_micros": 150_000,
                        "timeout_ms": 800,
                        "countries": ["US"],
                    },
                ]
            },
        },
    }


@dataclass(frozen=True, slots=True)
class SeedResult:
    app_id: str
    app_key: str | None  # the raw key when one was added now, else None
    config_version: int
    published_now: bool


def seed_app(
    database_url: str,
    app_id: str,
    config: dict[str, Any],
    app_key: str | None = None,
    actor: str = "seed",
) -> SeedResult:
    parse_config(1, config)  # refuse an invalid body before writing anything
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
