"""In a checkout (the editable install) the package data is the repository's own folders.

``tests/test_wheel.py`` checks the other half: the built wheel carries copies.
"""

from __future__ import annotations

from importlib.resources.abc import Traversable
from pathlib import Path

from mediation import resources
from mediation.ops.alerting import DEPLOY_DIR
from storage.migrate import SQL_DIR, load_migrations

ROOT = Path(__file__).resolve().parent.parent


def _files(folder: Traversable, prefix: str = "") -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in folder.iterdir():
        if entry.is_dir():
            found.update(_files(entry, f"{prefix}{entry.name}/"))
        else:
            found[prefix + entry.name] = entry.read_text(encoding="utf-8")
    return found


def _repository(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_text(encoding="utf-8")
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_the_migrations_are_the_repository_sql_folder() -> None:
    assert SQL_DIR is resources.SQL
    assert _files(resources.SQL) == _repository(ROOT / "sql")
    assert [m.version + ".sql" for m in load_migrations()] == sorted(
        p.name for p in (ROOT / "sql").glob("*.sql")
    )


def test_the_deploy_files_are_the_repository_deploy_folder() -> None:
    assert DEPLOY_DIR is resources.DEPLOY
    assert _files(resources.DEPLOY) == _repository(ROOT / "deploy")


def test_the_runbook_is_the_repository_operations_doc() -> None:
    assert resources.OPERATIONS_DOC.read_text(encoding="utf-8") == (
        ROOT / "docs" / "operations.md"
    ).read_text(encoding="utf-8")
