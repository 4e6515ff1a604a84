"""Dead letters can be listed and re-driven once, with a dry run first."""

from __future__ import annotations

import datetime as dt

import pytest

from storage.db import connect
from storage.deadletters import list_dead_letters, redrive
from storage.partitions import ensure_partitions

pytestmark = pytest.mark.integration

DAY = dt.date(2031, 1, 2)


def _insert(database_url: str) -> None:
    with connect(database_url) as conn:
        ensure_partitions(conn, [DAY], tables=["dead_letters"])
        conn.execute(
            "INSERT INTO dead_letters (day, id, reason, detail, opportunity_key, source_topic, "
            "source_partition, source_offset, payload) VALUES "
            "(%s, 't:0:7', 'invalid_json', 'bad', NULL, 'mediation.events.v1', 0, 7, %s), "
            "(%s, 'rule:x', 'duplicate_conflict', 'dup', NULL, NULL, NULL, NULL, %s)",
            (DAY, b"{bad", DAY, b"{}"),
        )
        conn.commit()


def test_list_filters_by_reason(database_url: str) -> None:
    _insert(database_url)
    assert [d.id for d in list_dead_letters(database_url, reason="invalid_json")] == ["t:0:7"]
    assert len(list_dead_letters(database_url)) == 2


def test_redrive_counts_first_then_sends_each_letter_once(database_url: str) -> None:
    _insert(database_url)
    sent: list[tuple[str, bytes | None, bytes]] = []

    def send(topic: str, key: bytes | None, value: bytes) -> None:
        sent.append((topic, key, value))

    assert redrive(database_url, send, dry_run=True) == (1, 1)
    assert sent == []
    assert redrive(database_url, send, dry_run=False) == (1, 1)
    assert redrive(database_url, send, dry_run=False) == (0, 1)
    assert sent == [("mediation.events.v1", None, b"{bad")]
    assert [d.redrive_status for d in list_dead_letters(database_url, reason="invalid_json")] == [
        "redriven"
    ]
