"""ASGI factory for uvicorn: ``uvicorn --factory gateway.asgi:app_from_env``."""

from __future__ import annotations

import logging

from mediation.settings import Settings

from .app import GatewayApp, create_app

__all__ = ["app_from_env"]


def app_from_env() -> GatewayApp:
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    return create_app(settings, settings.gateway_roles)
