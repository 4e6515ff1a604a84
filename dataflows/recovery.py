"""The Bytewax recovery store of one worker process.

Each worker process is a dataflow of its own (one Bytewax worker, no
cluster), so its recovery store holds every recovery partition. Bytewax
refuses ``-r DIR`` until DIR holds them (``python -m bytewax.recovery DIR
N``); ``mediation worker`` creates them on a process's first start, in a
directory of its layout (``DIR/<member label>``, ``mediation/membership.py``):
a changed layout starts from fresh stores, each partition from its safe
offset (docs/operations.md, "Rescaling the workers").
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bytewax.recovery import init_db_dir

__all__ = ["DEFAULT_RECOVERY_PARTITIONS", "ensure_recovery_partitions"]

DEFAULT_RECOVERY_PARTITIONS = 16


def ensure_recovery_partitions(
    directory: Path, total: int = DEFAULT_RECOVERY_PARTITIONS
) -> list[str]:
    """Create the store's partitions if DIR has none; return the names created."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.glob("part-*.sqlite3")):
        return []
    created = []
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        init_db_dir(Path(scratch), total)  # type: ignore[no-untyped-call]
        for part in range(total):
            name = f"part-{part}.sqlite3"
            shutil.move(str(Path(scratch) / name), directory / name)
            created.append(name)
    return created
