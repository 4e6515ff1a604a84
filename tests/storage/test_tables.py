"""``mediation/tables.py`` says what the migrations create: Python and SQL cannot drift."""

from __future__ import annotations

import psycopg
import pytest

from mediation.tables import PARTITIONED_TABLES, REPLAYED_TABLES, TABLES, RecordTable
from storage.db import connect

pytestmark = pytest.mark.integration


def _live_columns(conn: psycopg.Connection, table: str) -> list[tuple[str, str, bool, bool]]:
    """(name, type as format_type spells it, nullable, has a default), in column order."""
    rows = conn.execute(
        "SELECT column_name, data_type, character_maximum_length, is_nullable = 'YES', "
        "column_default IS NOT NULL FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [
        (name, f"{kind}({length})" if length is not None else kind, nullable, default)
        for name, kind, length, nullable, default in rows
    ]


def test_every_record_table_has_the_declared_columns_types_and_nullability(
    database_url: str,
) -> None:
    with connect(database_url) as conn:
        for table in TABLES.values():
            live = _live_columns(conn, table.name)
            declared = [(c.name, c.type, c.nullable) for c in table.columns]
            assert [column[:3] for column in live] == declared, table.name


def test_columns_the_writer_leaves_out_have_defaults(database_url: str) -> None:
    with connect(database_url) as conn:
        for table in TABLES.values():
            defaults = {name for name, _, _, default in _live_columns(conn, table.name) if default}
            left_out = {c.name for c in table.columns if not c.written}
            assert left_out <= defaults, table.name


def test_keys_and_day_partitions_are_the_declared_ones(database_url: str) -> None:
    with connect(database_url) as conn:
        for table in TABLES.values():
            key = [
                name
                for (name,) in conn.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                    "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                    "WHERE i.indrelid = %s::regclass AND i.indisprimary "
                    "ORDER BY array_position(i.indkey::int2[], a.attnum)",
                    (table.name,),
                ).fetchall()
            ]
            assert tuple(key) == table.key, table.name
            partitioning = conn.execute(
                "SELECT pg_get_partkeydef(%s::regclass)", (table.name,)
            ).fetchone()
            assert partitioning == (f"RANGE ({table.day_column})",), table.name


def test_every_partitioned_table_of_the_schema_is_declared(database_url: str) -> None:
    with connect(database_url) as conn:
        live = {
            name
            for (name,) in conn.execute(
                "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c "
                "ON c.oid = p.partrelid WHERE c.relnamespace = current_schema()::regnamespace"
            ).fetchall()
        }
    assert live == set(PARTITIONED_TABLES)


def test_derived_column_lists() -> None:
    events = TABLES["event_records"]
    assert events.written_columns[-2:] == ("late", "excluded_reason")
    assert "excluded_reason" not in events.read_columns
    assert "day" not in events.read_columns and "stored_at" not in events.read_columns
    assert events.row_key == ("event_id", "app_id")
    assert events.cold_sort == ("opportunity_key", "server_ts", "event_id", "app_id")
    assert TABLES["dead_letters"].cold_sort == ("id",)
    assert REPLAYED_TABLES == (
        "opportunity_records",
        "delivery_records",
        "event_records",
        "archive_records",
    )


@pytest.mark.parametrize("table", list(TABLES.values()), ids=list(TABLES))
def test_declared_keys_and_sorts_name_declared_columns(table: RecordTable) -> None:
    names = set(table.column_names)
    assert set(table.key) <= names
    assert set(table.cold_sort) <= names
    assert table.key[0] == table.day_column
