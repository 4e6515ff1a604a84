"""In-process cache of app keys and published configs.

The request path never waits on Postgres: the catalog is loaded at start
and refreshed in the background every ``refresh_s``. An unknown key
triggers at most one early refresh per ``miss_refresh_s`` (a key created a
moment ago should work without waiting for the next cycle, while a flood of
bad keys must not become a flood of queries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from mediation.rules.identity import hash_app_key
from mediation.rules.waterfall import ConfigError, RuntimeConfig, parse_config

__all__ = ["Catalog", "PublishedConfig"]

log = logging.getLogger(__name__)

_KEYS_SQL = "SELECT key_hash, app_id FROM app_keys WHERE revoked_at IS NULL"
_CONFIGS_SQL = """
SELECT DISTINCT ON (o.app_id) o.app_id, o.version, s.body, s.checksum
FROM publish_operations o
JOIN config_snapshots s ON s.app_id = o.app_id AND s.version = o.version
WHERE o.state = 'published'
ORDER BY o.app_id, o.id DESC
"""


@dataclass(frozen=True, slots=True)
class PublishedConfig:
    app_id: str
    version: int
    checksum: str
    body: Mapping[str, Any]
    runtime: RuntimeConfig


class Catalog:
    def __init__(
        self, pool: AsyncConnectionPool, refresh_s: float = 2.0, miss_refresh_s: float = 1.0
    ):
        self._pool = pool
        self._refresh_s = refresh_s
        self._miss_refresh_s = miss_refresh_s
        self._apps_by_key_hash: dict[str, str] = {}
        self._configs: dict[str, PublishedConfig] = {}
        self._last_refresh = 0.0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_forever(), name="catalog-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> None:
        async with self._lock:
            async with self._pool.connection() as conn:
                keys = await (await conn.execute(_KEYS_SQL)).fetchall()
                configs = await (await conn.execute(_CONFIGS_SQL)).fetchall()
            self._apps_by_key_hash = {key_hash: app_id for key_hash, app_id in keys}
            fresh: dict[str, PublishedConfig] = {}
            for app_id, version, body, checksum in configs:
                current = self._configs.get(app_id)
                if current is not None and current.version == version:
                    fresh[app_id] = current
                    continue
                try:
                    fresh[app_id] = PublishedConfig(
                        app_id, version, checksum, body, parse_config(version, body)
                    )
                except ConfigError as exc:
                    log.error(
                        "published config %s v%s is invalid, keeping the previous one: %s",
                        app_id,
                        version,
                        exc,
                    )
                    if current is not None:
                        fresh[app_id] = current
            self._configs = fresh
            self._last_refresh = time.monotonic()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.refresh()
            except Exception as exc:  # keep serving from the last good catalog
                log.warning("catalog refresh failed, serving the cached copy: %s", exc)

    async def app_for_key(self, app_key: str | None) -> str | None:
        if not app_key or len(app_key) > 256:
            return None
        key_hash = hash_app_key(app_key)
        app_id = self._apps_by_key_hash.get(key_hash)
        if app_id is None and time.monotonic() - self._last_refresh > self._miss_refresh_s:
            with contextlib.suppress(Exception):
                await self.refresh()
            app_id = self._apps_by_key_hash.get(key_hash)
        return app_id

    def config_for(self, app_id: str) -> PublishedConfig | None:
        return self._configs.get(app_id)
