"""ASGI factory for uvicorn: ``uvicorn --factory gateway.asgi:app_from_env``."""

from __future__ import annotations

import logging
import os

from mediation.settings import Settings

from .app import ROLES, GatewayApp, create_app

__all__ = ["app_from_env"]


def app_from_env() -> GatewayApp:
    logging.basicConfig(
        level=os.environ.get("MEDIATION_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    raw = os.environ.get("MEDIATION_GATEWAY_ROLES", "all")
    roles = ROLES if raw == "all" else frozenset(r.strip() for r in raw.split(","))
    return create_app(Settings.from_env(), roles)
