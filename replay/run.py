"""Replaying opportunities by key from hot or cold storage; requests go to ``replay_records``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from mediation.rules.closure import RULE_VERSION
from mediation.rules.replay import recompute_result, result_hash, snapshot_result, summary
from storage.cold import ColdStore

from . import cold

__all__ = ["record_replay", "replay_keys"]


def replay_keys(
    conn: psycopg.Connection,
    store: ColdStore,
    keys: Iterable[str],
    mode: str,
    rule_version: str | None = None,
) -> list[dict[str, Any]]:
    """One result per key, in key order; a key without stored records says so."""
    keys = sorted(set(keys))
    inputs = cold.load_inputs(conn, store, keys)
    archives = cold.load_archives(conn, store, keys)
    results: list[dict[str, Any]] = []
    for key in keys:
        stored, archive = inputs.get(key), archives.get(key)
        if stored is None or archive is None:
            missing = "archive record" if archive is None else "opportunity record"
            results.append({"opportunity_key": key, "mode": mode, "missing": missing})
        elif mode == "snapshot":
            results.append(snapshot_result(stored.opportunity, stored.events, archive))
        else:
            results.append(
                recompute_result(
                    stored.opportunity, stored.events, stored.late_events, archive, rule_version
                )
            )
    return results


def record_replay(
    conn: psycopg.Connection,
    requested_by: str,
    selector: dict[str, Any],
    mode: str,
    rule_version: str | None,
    results: list[dict[str, Any]],
) -> tuple[int, str]:
    """Write the request to ``replay_records``; its id and the results' hash."""
    digest = result_hash(results)
    row = conn.execute(
        "INSERT INTO replay_records (requested_by, selector, mode, rule_version, result_hash, "
        "diff_summary) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (
            requested_by,
            Jsonb(selector),
            mode,
            rule_version or RULE_VERSION,
            digest,
            Jsonb(summary(results)),
        ),
    ).fetchone()
    return (int(row[0]) if row else 0), digest
