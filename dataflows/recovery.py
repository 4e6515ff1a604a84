"""Bytewax recovery partitions for one worker process.

Bytewax refuses ``-r DIR`` until DIR holds the cluster's recovery
partitions (``python -m bytewax.recovery DIR N``). ``mediation worker``
creates them on a process's first start: partition ``p`` of ``total``
belongs to process ``p mod process_count``, so each process of a
multi-process cluster keeps its share on its own disk. The count is fixed
once state exists; see docs/operations.md before changing the cluster size.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bytewax.recovery import init_db_dir

__all__ = ["DEFAULT_RECOVERY_PARTITIONS", "ensure_recovery_partitions"]

DEFAULT_RECOVERY_PARTITIONS = 16


def ensure_recovery_partitions(
    directory: Path,
    process_index: int,
    process_count: int,
    total: int = DEFAULT_RECOVERY_PARTITIONS,
) -> list[str]:
    """Create this process's share of partitions if DIR has none; return the names."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.glob("part-*.sqlite3")):
        return []
    if not 0 <= process_index < process_count:
        raise ValueError(f"process index {process_index} is outside 0..{process_count - 1}")
    created = []
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        init_db_dir(Path(scratch), total)  # type: ignore[no-untyped-call]
        for part in range(total):
            if part % process_count == process_index:
                name = f"part-{part}.sqlite3"
                shutil.move(str(Path(scratch) / name), directory / name)
                created.append(name)
    return created
