"""The audit trail: one ``audit_records`` row per operator-visible change.

Written inside the caller's transaction, so a change and its audit record
commit together. The day partition is created on demand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .partitions import ensure_partitions

__all__ = ["record_audit"]


def record_audit(
    conn: psycopg.Connection,
    actor: str,
    action: str,
    subject: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    ensure_partitions(conn, [today], tables=["audit_records"])
    conn.execute(
        "INSERT INTO audit_records (day, actor, action, subject, before, after) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (
            today,
            actor,
            action,
            subject,
            Jsonb(dict(before)) if before is not None else None,
            Jsonb(dict(after)) if after is not None else None,
        ),
    )
