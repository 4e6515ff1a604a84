"""A worker process's recovery store: every recovery partition, created once."""

from __future__ import annotations

from pathlib import Path

from dataflows.recovery import ensure_recovery_partitions


def test_a_process_creates_its_whole_store_once(tmp_path: Path) -> None:
    created = ensure_recovery_partitions(tmp_path / "member-0-of-2", total=4)
    assert created == [f"part-{i}.sqlite3" for i in range(4)]
    assert sorted(p.name for p in (tmp_path / "member-0-of-2").iterdir()) == created
    assert ensure_recovery_partitions(tmp_path / "member-0-of-2", total=4) == []
