"""Fixtures of the gateway tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from mediation.settings import Settings
from mediation.sim.seed import demo_config, new_app_key, seed_app


@pytest.fixture
def admin_token() -> str:
    """The admin token of ``app_client``'s gateway."""
    return "admin-token-for-hostile-input"


@pytest.fixture
def app_client(settings: Settings, admin_token: str) -> Iterator[tuple[TestClient, str]]:
    """An in-process gateway (with ``admin_token``) and a write key of app ``hostile``.

    A 500 is answered, not raised.
    """
    key = new_app_key()
    seed_app(settings.database_url, "hostile", demo_config(), key)
    app = create_app(replace(settings, admin_token=admin_token))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, key
