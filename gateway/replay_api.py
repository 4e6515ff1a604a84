"""The replay API (admin bearer token): small replays answered inline, the rest as jobs.

::

    POST /v1/replay        {"opportunity_key" | "opportunity_keys" | "from", "to",
                            "app_id"?, "placement_id"?, "mode"?, "rule_version"?,
                            "config_version"?, "format"?: "jsonl" | "parquet"}
    GET  /v1/replay/{id}   a replay record: status, hash, summary, result location

A request does bounded work only, so that no replay competes with the SDK
routes: it is admitted at ``MEDIATION_REPLAY_REQUESTS_PER_S`` across the
fleet (429 ``replay_throttled``) before its body is read, then validated.
It is answered inline (200, with its results) only when that can be
decided cheaply: at most ``INLINE_MAX`` keys, or a range inside one UTC
day still in Postgres where an index probe stopped at ``INLINE_MAX + 1``
finds at most ``INLINE_MAX`` opportunities. Anything else is queued (202,
``Location``) without being sized: at most ``MAX_OPEN_JOBS`` jobs wait or
run at once (429 ``replay_queue_full``, a count under a table lock), and
``mediation replay-jobs``, a separate process, sizes and runs them
(``replay/jobs.py``); the result lands in cold storage as JSONL or
Parquet. Every request is a ``replay_records`` row.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from starlette.requests import Request
from starlette.responses import Response

from mediation.rules.replay import ReplayRequest, ReplayRequestError, Selection, parse_request
from mediation.rules.ulid import day_of_ms
from replay.jobs import JOB_FORMATS, enqueue, job_state
from replay.output import CollectedOutput
from replay.run import run_replay
from storage.cold import ColdStoreError, cold_store_for
from storage.configs import get_snapshot
from storage.db import connect
from storage.hot_records import count_opportunities
from storage.replay_jobs import lock_and_count_open_replays
from storage.tiered_days import TieredDays
from storage.tiering import TieringError

from .admin import admin_route
from .context import GatewayContext
from .errors import ApiError, ApiRefusalError, ApiUnavailableError, Translation, translated
from .http import decimal_int, json_response, small_json_object

__all__ = ["INLINE_MAX", "MAX_OPEN_JOBS", "get_replay", "post_replay"]

INLINE_MAX = 1_000
MAX_OPEN_JOBS = 10
_ACTOR = "admin-api"


def _invalid_replay_request(exc: ReplayRequestError) -> ApiError:
    return ApiRefusalError(422, "invalid_replay_request", str(exc))


def _cold_storage_unavailable(exc: ColdStoreError | TieringError) -> ApiError:
    # The replay record says failed, with why.
    return ApiUnavailableError(
        503,
        "cold_storage_unavailable",
        f"cold storage cannot be read: {exc}",
        headers={"Retry-After": "30"},
    )


_REPLAY_ERRORS: Translation = {
    ReplayRequestError: _invalid_replay_request,
    ColdStoreError: _cold_storage_unavailable,
    TieringError: _cold_storage_unavailable,
}


def _fits_inline(conn: psycopg.Connection, selection: Selection) -> bool:
    """Whether the selection is small enough to answer inline, decided in bounded time.

    Keys are counted as given. A range is probed only when it lies inside
    one UTC day whose tables are all still in Postgres: one catalog row
    and at most ``INLINE_MAX + 1`` index entries are read, whatever the
    range. Sizing anything longer (a range over years reads the catalog
    for every day, and Parquet footers for tiered ones) is the job
    runner's work.
    """
    if not selection.is_range:
        return len(selection.keys) <= INLINE_MAX
    assert selection.start_ms is not None and selection.end_ms is not None
    day = day_of_ms(selection.start_ms)
    if day != day_of_ms(selection.end_ms - 1):
        return False
    tiered = TieredDays.read(conn, [day])
    if tiered.dropped or tiered.deleted:
        return False
    low, high = selection.key_bounds()
    return count_opportunities(conn, day, low, high, INLINE_MAX + 1) <= INLINE_MAX


def _check_config_version(conn: psycopg.Connection, request: ReplayRequest) -> None:
    """A named config version its app lacks is refused now, not when the job runs."""
    app_id = request.selection.app_id
    version = request.config_version
    if app_id is not None and version is not None and get_snapshot(conn, app_id, version) is None:
        raise ReplayRequestError(f"app {app_id} has no config version {version}")


def _replay_or_enqueue(
    ctx: GatewayContext, request: ReplayRequest, output_format: str
) -> dict[str, Any]:
    settings = ctx.settings
    with connect(settings.database_url, autocommit=True) as conn:
        _check_config_version(conn, request)
        if _fits_inline(conn, request.selection):
            store = cold_store_for(settings)
            output = CollectedOutput()
            replay_id, digest, _ = run_replay(conn, store, request, output, requested_by=_ACTOR)
            return {
                "replay_id": replay_id,
                "status": "done",
                "result_hash": digest.hexdigest(),
                "summary": digest.summary(),
                "results": output.results,
            }
        with conn.transaction():
            if lock_and_count_open_replays(conn) >= MAX_OPEN_JOBS:
                raise ApiRefusalError(
                    429,
                    "replay_queue_full",
                    f"{MAX_OPEN_JOBS} replay jobs are already waiting or running; try again later",
                    headers={"Retry-After": "30"},
                )
            replay_id = enqueue(conn, request, _ACTOR, output_format)
        return {"replay_id": replay_id, "status": "queued"}


@admin_route
async def post_replay(request: Request, ctx: GatewayContext) -> Response:
    if not ctx.rate_limiter.allow("_admin", "replay", ctx.settings.replay_requests_per_s):
        raise ApiRefusalError(
            429,
            "replay_throttled",
            f"at most {ctx.settings.replay_requests_per_s} replay requests per second",
            headers={"Retry-After": "1"},
        )
    body = await small_json_object(request)
    output_format = body.get("format", "jsonl")
    if output_format not in JOB_FORMATS:
        raise ApiRefusalError(
            422, "invalid_replay_request", f"format must be one of {', '.join(JOB_FORMATS)}"
        )
    with translated(_REPLAY_ERRORS):
        replay_request = parse_request(body)
        answer = await asyncio.to_thread(_replay_or_enqueue, ctx, replay_request, output_format)
    if answer["status"] == "queued":
        location = f"/v1/replay/{answer['replay_id']}"
        return json_response({**answer, "location": location}, 202, {"Location": location})
    return json_response(answer)


@admin_route
async def get_replay(request: Request, ctx: GatewayContext) -> Response:
    text = request.path_params["replay_id"]
    replay_id = decimal_int(text, 18)
    if replay_id is None:
        raise ApiRefusalError(404, "unknown_replay", "no such replay")

    def read() -> dict[str, Any] | None:
        with connect(ctx.settings.database_url, autocommit=True) as conn:
            return job_state(conn, replay_id)

    state = await asyncio.to_thread(read)
    if state is None:
        raise ApiRefusalError(404, "unknown_replay", f"no replay {text}")
    return json_response(state)
