"""Fixtures of the tiering tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tiering_data import fill_day

from mediation.settings import Settings
from storage.cold import ColdStore, FileColdStore, S3ColdStore, open_cold_store
from storage.db import connect


@pytest.fixture
def filled_database(database_url: str) -> str:
    """A database holding DAY: 30 closed opportunities, 61 events (1 late), 1 dead letter."""
    fill_day(database_url)
    return database_url


@pytest.fixture
def conn(filled_database: str) -> Iterator[psycopg.Connection]:
    with connect(filled_database, autocommit=True) as connection:
        yield connection


@pytest.fixture
def file_store(tmp_path: Path) -> FileColdStore:
    return FileColdStore(tmp_path / "cold")


@pytest.fixture(params=["file", "s3"])
def store(
    request: pytest.FixtureRequest,
    file_store: FileColdStore,
    services: Settings,
) -> ColdStore:
    if request.param == "file":
        return file_store
    s3 = open_cold_store(f"s3://tiering-tests/{uuid.uuid4().hex[:8]}", services.aws_endpoint_url
                         or "http://127.0.0.1:9000")  # fmt: skip
    assert isinstance(s3, S3ColdStore)
    s3.ensure_bucket()
    return s3
