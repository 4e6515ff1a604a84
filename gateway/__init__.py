"""The Starlette gateway: sync requests (A/E), config reads (H), event ingest (F)."""

from .app import create_app

__all__ = ["create_app"]
