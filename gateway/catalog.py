"""In-process cache of app keys and published configs.

The request path never waits on Postgres: the catalog is loaded at start
and refreshed in the background every ``refresh_s``. An unknown key
triggers at most one early refresh per ``miss_refresh_s`` (a key created a
moment ago should work without waiting for the next cycle, while a flood of
bad keys must not become a flood of queries). What it reads is
``storage.catalog_reads``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import Gauge
from psycopg_pool import AsyncConnectionPool

from mediation.rules.identity import hash_app_key
from mediation.rules.publish import served_percent
from mediation.rules.waterfall import (
    ConfigError,
    DegradationProfile,
    RuntimeConfig,
    degrade,
    parse_config,
)
from storage.catalog_reads import read_catalog

from .periodic import PeriodicTask

__all__ = ["Catalog", "PublishedConfig", "Rollout"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PublishedConfig:
    app_id: str
    version: int
    checksum: str
    body: Mapping[str, Any]
    runtime: RuntimeConfig


@dataclass(frozen=True, slots=True)
class Rollout:
    """What one app serves: ``new`` to buckets below ``percent``, else ``previous``."""

    new: PublishedConfig
    previous: PublishedConfig | None
    percent: int

    def config_for_bucket(self, bucket: int | None) -> PublishedConfig | None:
        """``bucket=None`` asks for the config every device is sure to have."""
        if self.percent >= 100 or (bucket is not None and bucket < self.percent):
            return self.new
        if self.previous is not None:
            return self.previous
        # Nothing to fall back on (a first version): serve it unless rolled back.
        return self.new if self.percent > 0 else None


_MAX_REMEMBERED_KEYS = 10_000


class Catalog:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        refresh_s: float = 2.0,
        miss_refresh_s: float = 1.0,
        degradation_gauge: Gauge | None = None,
    ):
        self._pool = pool
        self._refresh_s = refresh_s
        self._miss_refresh_s = miss_refresh_s
        self._apps_by_key_hash: dict[str, str] = {}
        self._app_by_seen_key: dict[str, str] = {}
        self._rollouts: dict[str, Rollout] = {}
        self._parsed: dict[tuple[str, int], PublishedConfig] = {}
        # app -> the degradation profile an operator switched on (by name)
        self._degraded: dict[str, str] = {}
        self._degraded_configs: dict[tuple[str, int, str], PublishedConfig] = {}
        self._degradation_gauge = degradation_gauge
        self._last_refresh = 0.0
        self._refresher = PeriodicTask("catalog-refresh", refresh_s, self.refresh)
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.refresh()
        self._refresher.start()

    async def stop(self) -> None:
        await self._refresher.stop()

    async def refresh(self, only_if_older_s: float | None = None) -> None:
        """Reload keys and configs; with ``only_if_older_s``, skip a fresh catalog."""
        async with self._lock:
            if (
                only_if_older_s is not None
                and time.monotonic() - self._last_refresh <= only_if_older_s
            ):
                return  # another caller refreshed while this one waited
            # Counted from the attempt, so a failing database is not retried
            # by every request that carries an unknown key.
            self._last_refresh = time.monotonic()
            async with self._pool.connection() as conn:
                rows = await read_catalog(conn)
            self._apps_by_key_hash = rows.app_ids_by_key_hash
            self._app_by_seen_key = {}
            rollouts: dict[str, Rollout] = {}
            for row in rows.rollouts:
                app_id = row.app_id
                new = self._parse(app_id, row.version, row.body, row.checksum)
                if new is None:  # invalid: keep serving what was served before
                    if app_id in self._rollouts:
                        rollouts[app_id] = self._rollouts[app_id]
                    continue
                previous = None
                if row.previous_version is not None:
                    # An operation's previous version is a published snapshot of its app.
                    assert row.previous_body is not None and row.previous_checksum is not None
                    previous = self._parse(
                        app_id, row.previous_version, row.previous_body, row.previous_checksum
                    )
                rollouts[app_id] = Rollout(
                    new, previous, served_percent(row.state, row.rollout_percent)
                )
            self._rollouts = rollouts
            self._set_degraded(rows.degradation_profiles)

    def _set_degraded(self, degraded: dict[str, str]) -> None:
        gauge = self._degradation_gauge
        if gauge is not None:
            for app_id, profile in self._degraded.items():
                if degraded.get(app_id) != profile:
                    gauge.labels(app_id, profile).set(0)
            for app_id, profile in degraded.items():
                gauge.labels(app_id, profile).set(1)
        self._degraded = degraded

    def _parse(
        self, app_id: str, version: int, body: Mapping[str, Any], checksum: str
    ) -> PublishedConfig | None:
        cached = self._parsed.get((app_id, version))
        if cached is not None:
            return cached
        try:
            parsed = PublishedConfig(app_id, version, checksum, body, parse_config(version, body))
        except ConfigError as exc:
            log.error("config %s v%s is invalid and is not served: %s", app_id, version, exc)
            return None
        self._parsed[(app_id, version)] = parsed
        return parsed

    async def app_for_key(self, app_key: str | None) -> str | None:
        if not app_key or len(app_key) > 256:
            return None
        # Known keys skip the hashing; the memo is emptied on every refresh,
        # so a revoked key stops working within one refresh cycle.
        app_id = self._app_by_seen_key.get(app_key)
        if app_id is not None:
            return app_id
        key_hash = hash_app_key(app_key)
        app_id = self._apps_by_key_hash.get(key_hash)
        if app_id is not None and len(self._app_by_seen_key) < _MAX_REMEMBERED_KEYS:
            self._app_by_seen_key[app_key] = app_id
        if app_id is None and time.monotonic() - self._last_refresh > self._miss_refresh_s:
            with contextlib.suppress(Exception):
                await self.refresh(only_if_older_s=self._miss_refresh_s)
            app_id = self._apps_by_key_hash.get(key_hash)
        return app_id

    def app_ids(self) -> list[str]:
        """Apps with something to serve."""
        return sorted(self._rollouts)

    def rollout_positions(self) -> dict[str, tuple[int, int]]:
        """Per app: the version its latest operation rolls out and the percent served (metrics)."""
        return {app_id: (r.new.version, r.percent) for app_id, r in self._rollouts.items()}

    def config_for(self, app_id: str, bucket: int | None = None) -> PublishedConfig | None:
        """The config a device in rollout ``bucket`` gets (``None``: the stable one).

        With a degradation profile switched on (and defined in that
        version), its overrides are applied.
        """
        rollout = self._rollouts.get(app_id)
        published = None if rollout is None else rollout.config_for_bucket(bucket)
        profile_name = self._degraded.get(app_id) if published is not None else None
        if published is None or profile_name is None:
            return published
        profile = published.runtime.degradation_profiles.get(profile_name)
        if profile is None:
            return published  # not defined in this version: nothing to apply
        cache_key = (app_id, published.version, profile_name)
        degraded = self._degraded_configs.get(cache_key)
        if degraded is None:
            degraded = replace(published, runtime=degrade(published.runtime, profile))
            self._degraded_configs[cache_key] = degraded
        return degraded

    def degradation(self, app_id: str) -> tuple[str, DegradationProfile] | None:
        """The profile switched on for an app, if its served config defines it."""
        name = self._degraded.get(app_id)
        if name is None:
            return None
        rollout = self._rollouts.get(app_id)
        published = None if rollout is None else rollout.config_for_bucket(None)
        profile = None if published is None else published.runtime.degradation_profiles.get(name)
        return None if profile is None else (name, profile)
