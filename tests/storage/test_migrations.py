"""Migrations and day partitions against the real Postgres."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from storage.db import connect
from storage.migrate import MigrationError, load_migrations, migrate
from storage.partitions import PARTITIONED_TABLES, ensure_partitions

pytestmark = pytest.mark.integration


def test_migrate_twice_applies_nothing_the_second_time(database_url: str) -> None:
    assert migrate(database_url) == []  # the template was migrated already


def test_concurrent_migrations_serialise_on_the_advisory_lock(
    database_url: str, tmp_path: Path
) -> None:
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    for migration in load_migrations():
        (sql_dir / migration.path.name).write_text(migration.sql)
    (sql_dir / "9001_race.sql").write_text("CREATE TABLE race_probe (id int PRIMARY KEY);")
    results: list[object] = []

    def run() -> None:
        try:
            results.append(migrate(database_url, sql_dir))
        except Exception as exc:  # collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(str, results)) == sorted(["[]", "[]", "[]", "['9001_race']"])


def test_editing_an_applied_migration_is_refused(database_url: str, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    first = load_migrations()[0]
    (sql_dir / first.path.name).write_text(first.sql + "\n-- edited\n")
    with pytest.raises(MigrationError, match="add a new migration"):
        migrate(database_url, sql_dir)


def test_partitions_are_created_once_per_table_and_day(database_url: str) -> None:
    day = dt.date(2031, 5, 17)
    with connect(database_url) as conn:
        assert ensure_partitions(conn, [day, day]) == len(PARTITIONED_TABLES)
        assert ensure_partitions(conn, [day]) == 0
        conn.execute(
            "INSERT INTO dead_letters (day, id, reason, detail, payload) "
            "VALUES (%s, 'x', 'r', 'd', '')",
            (day,),
        )
        conn.commit()
