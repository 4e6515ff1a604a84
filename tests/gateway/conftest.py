"""Fixtures of the gateway tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.seed import demo_config, new_app_key, seed_app
from mediation.settings import Settings


@pytest.fixture
def app_client(settings: Settings) -> Iterator[tuple[TestClient, str]]:
    """An in-process gateway and a write key of app ``hostile``; a 500 is answered, not raised."""
    key = new_app_key()
    seed_app(settings.database_url, "hostile", demo_config(), key)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, key
