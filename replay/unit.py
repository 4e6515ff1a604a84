"""One unit of a replay: the results of one chunk of a selection, in key order.

A selection is cut into chunks (``Selection.chunks``: days, then windows
of about ``CHUNK_ROWS`` opportunities, or a thousand keys), each read and
replayed on its own: the units of a replay are independent, so they run in
this process one after the other (``replay/run.py``) or in worker
processes (``replay/parallel.py``), with the same results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from mediation.rules.replay import (
    ReplayRequest,
    ReplayRequestError,
    Selection,
    WindowOverride,
    missing_result,
    recompute_result,
    snapshot_result,
)
from mediation.rules.waterfall import ConfigError, parse_config
from storage.cold import ColdStore
from storage.configs import get_snapshot

from . import cold

__all__ = ["Overrides", "unit_results", "window_overrides"]

Overrides = Callable[[str], WindowOverride]


class _WindowOverrides:
    """The named config snapshot of each app, read once per app."""

    def __init__(self, conn: psycopg.Connection, version: int):
        self._conn, self._version = conn, version
        self._of_app: dict[str, WindowOverride] = {}

    def __call__(self, app_id: str) -> WindowOverride:
        if app_id not in self._of_app:
            snapshot = get_snapshot(self._conn, app_id, self._version)
            if snapshot is None:
                raise ReplayRequestError(f"app {app_id} has no config version {self._version}")
            try:
                config = parse_config(self._version, snapshot.body)
            except ConfigError as exc:
                raise ReplayRequestError(f"app {app_id} config {self._version}: {exc}") from exc
            self._of_app[app_id] = WindowOverride(
                self._version, config.closure_window_ms, config.grace_ms, config.skew_tolerance_ms
            )
        return self._of_app[app_id]


def window_overrides(conn: psycopg.Connection, request: ReplayRequest) -> Overrides | None:
    """The windows of the request's named config snapshot, per app; None: the archive's own."""
    return _WindowOverrides(conn, request.config_version) if request.config_version else None


def unit_results(
    conn: psycopg.Connection,
    store: ColdStore,
    request: ReplayRequest,
    chunk: Selection,
    overrides: Overrides | None,
) -> Iterator[dict[str, Any]]:
    """One result per opportunity of ``chunk``, in key order.

    A key selection answers every key, those without records with what is
    missing; a range answers the opportunities it finds.
    """
    mode = request.mode
    loaded = cold.load(conn, store, chunk)
    inputs, archives = loaded.inputs, loaded.archives
    keys = chunk.keys if not chunk.is_range else sorted(inputs.keys() | archives.keys())
    deleted = {day.isoformat() for day in loaded.deleted_days}
    for key in keys:
        stored, archive = inputs.get(key), archives.get(key)
        if stored is None or archive is None:
            missing = "archive record" if archive is None else "opportunity record"
            if deleted:
                missing += f" (deleted by retention: {', '.join(sorted(deleted))})"
            yield missing_result(key, mode, missing)
        elif mode == "snapshot":
            yield snapshot_result(stored.opportunity, stored.events, archive)
        else:
            yield recompute_result(
                stored.opportunity,
                stored.events,
                stored.late_events,
                archive,
                request.rule_version,
                overrides(archive.app_id) if overrides else None,
            )
