"""The replay API (admin bearer token): small replays answered inline, large ones as jobs.

::

    POST /v1/replay        {"opportunity_key" | "opportunity_keys" | "from", "to",
                            "app_id"?, "placement_id"?, "mode"?, "rule_version"?,
                            "config_version"?, "format"?: "jsonl" | "parquet"}
    GET  /v1/replay/{id}   a replay record: status, hash, summary, result location

A selection of at most ``INLINE_MAX`` opportunities is replayed at once and
answered with its results (200). A larger one is queued (202, ``Location``)
for ``mediation replay-jobs``, a separate process, so that long replays
never compete with the request path; its result lands in cold storage as
JSONL or Parquet. Requests are admitted at ``MEDIATION_REPLAY_REQUESTS_PER_S``
across the fleet (429 ``replay_throttled``), and at most ``MAX_OPEN_JOBS``
jobs wait or run at once (429 ``replay_queue_full``). Every request is a
``replay_records`` row.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from starlette.requests import Request
from starlette.responses import Response

from mediation.rules.replay import ReplayRequest, ReplayRequestError, parse_request
from replay.cold import opportunities_per_day
from replay.jobs import JOB_FORMATS, enqueue, job_state
from replay.output import CollectedOutput
from replay.run import run_replay
from storage.cold import ColdStore, ColdStoreError, open_cold_store
from storage.db import connect
from storage.tiering import TieringError

from .admin import admin_route
from .context import GatewayContext
from .http import decimal_int, error_response, json_response, small_json_object

__all__ = ["INLINE_MAX", "MAX_OPEN_JOBS", "get_replay", "post_replay"]

INLINE_MAX = 1_000
MAX_OPEN_JOBS = 10
_ACTOR = "admin-api"


class _QueueFullError(Exception):
    pass


def _selection_size(conn: psycopg.Connection, store: ColdStore, request: ReplayRequest) -> int:
    selection = request.selection
    if not selection.is_range:
        return len(selection.keys)
    return sum(opportunities_per_day(conn, store, selection).values())


def _replay_or_enqueue(
    ctx: GatewayContext, request: ReplayRequest, output_format: str
) -> dict[str, Any]:
    settings = ctx.settings
    store = open_cold_store(settings.cold_storage_url, settings.aws_endpoint_url)
    with connect(settings.database_url, autocommit=True) as conn:
        if _selection_size(conn, store, request) <= INLINE_MAX:
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
            # One at a time, so that concurrent requests cannot overfill the queue.
            conn.execute("LOCK TABLE replay_records IN SHARE ROW EXCLUSIVE MODE")
            row = conn.execute(
                "SELECT count(*) FROM replay_records WHERE status IN ('queued', 'running')"
            ).fetchone()
            if row and row[0] >= MAX_OPEN_JOBS:
                raise _QueueFullError
            replay_id = enqueue(conn, request, _ACTOR, output_format)
        return {"replay_id": replay_id, "status": "queued"}


@admin_route
async def post_replay(request: Request, ctx: GatewayContext) -> Response:
    if not ctx.rate_limiter.allow("_admin", "replay", ctx.settings.replay_requests_per_s):
        return error_response(
            429,
            "replay_throttled",
            f"at most {ctx.settings.replay_requests_per_s} replay requests per second",
            headers={"Retry-After": "1"},
        )
    body = await small_json_object(request)
    if isinstance(body, Response):
        return body
    output_format = body.get("format", "jsonl")
    if output_format not in JOB_FORMATS:
        return error_response(
            422, "invalid_replay_request", f"format must be one of {', '.join(JOB_FORMATS)}"
        )
    try:
        replay_request = parse_request(body)
        answer = await asyncio.to_thread(_replay_or_enqueue, ctx, replay_request, output_format)
    except ReplayRequestError as exc:
        return error_response(422, "invalid_replay_request", str(exc))
    except (ColdStoreError, TieringError) as exc:  # the replay record says failed, with why
        return error_response(
            503, "cold_storage_unavailable", f"cold storage cannot be read: {exc}",
            headers={"Retry-After": "30"},
        )  # fmt: skip
    except _QueueFullError:
        return error_response(
            429,
            "replay_queue_full",
            f"{MAX_OPEN_JOBS} replay jobs are already waiting or running; try again later",
            headers={"Retry-After": "30"},
        )
    if answer["status"] == "queued":
        location = f"/v1/replay/{answer['replay_id']}"
        return json_response({**answer, "location": location}, 202, {"Location": location})
    return json_response(answer)


@admin_route
async def get_replay(request: Request, ctx: GatewayContext) -> Response:
    text = request.path_params["replay_id"]
    replay_id = decimal_int(text, 18)
    if replay_id is None:
        return error_response(404, "unknown_replay", "no such replay")

    def read() -> dict[str, Any] | None:
        with connect(ctx.settings.database_url, autocommit=True) as conn:
            return job_state(conn, replay_id)

    state = await asyncio.to_thread(read)
    if state is None:
        return error_response(404, "unknown_replay", f"no replay {text}")
    return json_response(state)
