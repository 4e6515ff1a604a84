"""Shared fixtures: real services, one fresh database and topic prefix per test.

Integration tests talk to the real Postgres, Redis, Kafka-wire broker and S3
server that ``scripts/test`` (and ``.ci/run``) start with ``mediation dev
up``. A service that is not reachable is a failure, never a skip.

With ``--via-pooler`` every test reaches its database through the local
pgbouncer in transaction mode (``mediation dev up --services pooler``), as
production reaches Supabase; creating and dropping the database stays direct.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from mediation.settings import Settings
from mediation.sim.devstack import pooler_port, pooler_url
from mediation.topics import ensure_topics
from storage.migrate import migrate

_TEMPLATE_DB = f"mediation_tmpl_{os.getpid()}"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--via-pooler",
        action="store_true",
        help="reach each test's database through pgbouncer in transaction mode",
    )


@pytest.fixture(scope="session")
def via_pooler(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--via-pooler"))


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def services(base_settings: Settings, via_pooler: bool) -> Settings:
    """Fail (not skip) when a service the integration tests need is down."""
    s3 = urlsplit(base_settings.aws_endpoint_url or "http://127.0.0.1:9000")
    checks = {
        "postgres": urlsplit(base_settings.database_url),
        "redis": urlsplit(base_settings.redis_url),
        "kafka": urlsplit("//" + base_settings.kafka_bootstrap_servers.split(",")[0]),
        "s3": s3,
    }
    if via_pooler:
        checks["pgbouncer"] = urlsplit(f"//127.0.0.1:{pooler_port()}")
    down = [
        f"{name} ({url.hostname}:{url.port})"
        for name, url in checks.items()
        if not _reachable(url.hostname or "127.0.0.1", url.port or 0)
    ]
    if down:
        pytest.fail(
            "services not reachable: " + ", ".join(down) + ". Start them with "
            "`.venv/bin/mediation dev up` (scripts/test does this).",
            pytrace=False,
        )
    return base_settings


def _admin_url(database_url: str, dbname: str = "postgres") -> str:
    return urlsplit(database_url)._replace(path=f"/{dbname}").geturl()


@pytest.fixture(scope="session")
def template_database(services: Settings) -> Iterator[str]:
    """A migrated database that each test's database is copied from (fast)."""
    admin = _admin_url(services.database_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(_TEMPLATE_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_TEMPLATE_DB)))
    migrate(_admin_url(services.database_url, _TEMPLATE_DB))
    yield _TEMPLATE_DB
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_TEMPLATE_DB))
        )


@pytest.fixture
def direct_database_url(services: Settings, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    name = f"mediation_t_{uuid.uuid4().hex[:12]}"
    admin = _admin_url(services.database_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_database)
            )
        )
    yield _admin_url(services.database_url, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def database_url(direct_database_url: str, via_pooler: bool) -> str:
    """The test's database as the code under test reaches it."""
    return pooler_url(direct_database_url) if via_pooler else direct_database_url


@pytest.fixture
def settings(services: Settings, database_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own database, topic prefix and data dir."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    test_settings = replace(
        services,
        database_url=database_url,
        topic_prefix=prefix,
        data_dir=tmp_path,
        kafka_partitions=2,
    )
    ensure_topics(test_settings.kafka_bootstrap_servers, test_settings.topics.all(), partitions=2)
    return test_settings


@pytest.fixture
def child_env(settings: Settings) -> dict[str, str]:
    """Environment for a child process (gateway, worker) using this test's settings."""
    return settings.child_env()
