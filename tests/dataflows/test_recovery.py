"""Recovery partitions are split across the processes of a worker cluster."""

from __future__ import annotations

from pathlib import Path

from dataflows.recovery import ensure_recovery_partitions


def test_each_process_creates_its_share_once(tmp_path: Path) -> None:
    first = ensure_recovery_partitions(tmp_path / "p0", 0, 2, total=4)
    second = ensure_recovery_partitions(tmp_path / "p1", 1, 2, total=4)
    assert first == ["part-0.sqlite3", "part-2.sqlite3"]
    assert second == ["part-1.sqlite3", "part-3.sqlite3"]
    assert sorted(p.name for p in (tmp_path / "p0").iterdir()) == first
    assert ensure_recovery_partitions(tmp_path / "p0", 0, 2, total=4) == []
