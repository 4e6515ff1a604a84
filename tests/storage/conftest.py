"""Fixtures of the tiering tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tiering_data import fill_day

from storage.cold import FileColdStore


@pytest.fixture
def filled_database(database_url: str) -> str:
    """A database holding DAY: 30 closed opportunities, 61 events (1 late), 1 dead letter."""
    fill_day(database_url)
    return database_url


@pytest.fixture
def conn(filled_database: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(filled_database, autocommit=True) as connection:
        yield connection


@pytest.fixture
def file_store(tmp_path: Path) -> FileColdStore:
    return FileColdStore(tmp_path / "cold")
