"""ASGI factories for the HTTP servers ``mediation api`` starts.

uvicorn: ``gateway.asgi:app_from_env`` (its protocol bounds the request
head); Granian: ``gateway.asgi:bounded_app_from_env`` (the same app behind
``BoundedHead``, since Granian's parser cannot answer in the error shape).
"""

from __future__ import annotations

import logging

from mediation.settings import Settings

from .app import GatewayApp, create_app
from .granian_head import BoundedHead

__all__ = ["app_from_env", "bounded_app_from_env"]


def app_from_env() -> GatewayApp:
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    return create_app(settings, settings.gateway_roles)


def bounded_app_from_env() -> BoundedHead:
    return BoundedHead(app_from_env())
