"""Admin routes for configs and their publishing (bearer ``MEDIATION_ADMIN_TOKEN``).

::

    POST /v1/admin/apps/{app_id}/configs            body: the config -> its version
    GET  /v1/admin/apps/{app_id}/configs            versions, newest first
    GET  /v1/admin/apps/{app_id}/configs/{version}  one version's body
    POST /v1/admin/apps/{app_id}/publish            {"version", "plan"?, "thresholds"?}
    GET  /v1/admin/publish/{operation_id}           an operation and its transitions
    POST /v1/admin/publish/{operation_id}/rollback  {"reason"}
    POST /v1/admin/apps/{app_id}/degradation        {"profile": "lite" | null, "reason"}

The same storage functions as ``mediation config`` (``storage.configs``),
run in a thread with a connection of their own. The publish worker moves
the operations; these routes only create them or ask for a rollback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from mediation.rules.publish import DEFAULT_PLAN, HealthThresholds, PlanError, parse_plan
from mediation.rules.waterfall import ConfigError
from storage.configs import (
    PublishError,
    PublishOperation,
    get_operation,
    get_snapshot,
    list_snapshots,
    list_transitions,
    push_config,
    request_rollback,
    start_publish,
    switch_degradation,
)
from storage.db import connect

from .admin import admin_route, refresh_catalog_quietly
from .context import GatewayContext
from .errors import ApiError, ApiRefusalError, Translation, translated
from .http import contains_nul, decimal_int, json_response, read_json_body, small_json_object

__all__ = [
    "create_config",
    "get_config_version",
    "get_publish_operation",
    "list_config_versions",
    "rollback_publish_operation",
    "start_publish_operation",
    "switch_degradation_profile",
]

T = TypeVar("T")

_MAX_CONFIG_BYTES = 1 << 20
# A refused config or publish request's status by its code (any other code: 422).
_PUBLISH_ERROR_STATUS = {
    "unknown_app": 404,
    "unknown_version": 404,
    "unknown_operation": 404,
    "operation_active": 409,
    "already_published": 409,
    "not_rollbackable": 409,
    "not_latest": 409,
    "busy": 409,
    "unknown_profile": 422,
}
_ACTOR = "admin-api"


async def _in_thread(ctx: GatewayContext, work: Callable[[Any], T]) -> T:
    def run() -> T:
        with connect(ctx.settings.database_url, autocommit=True) as conn:
            return work(conn)

    return await asyncio.to_thread(run)


def _operation_json(operation: PublishOperation) -> dict[str, Any]:
    return {
        "id": operation.id,
        "app_id": operation.app_id,
        "version": operation.version,
        "previous_version": operation.previous_version,
        "state": operation.state,
        "stage": operation.stage,
        "rollout_percent": operation.rollout_percent,
        "plan": [{"percent": s.percent, "dwell_ms": s.dwell_ms} for s in operation.plan],
        "reason": operation.reason,
        "created_by": operation.created_by,
        "updated_at": operation.updated_at.isoformat(),
    }


def _int_param(request: Request, name: str) -> int | None:
    return decimal_int(request.path_params[name], 11)


def _refused(exc: PublishError) -> ApiError:
    return ApiRefusalError(_PUBLISH_ERROR_STATUS.get(exc.code, 422), exc.code, str(exc))


def _invalid_config(exc: ConfigError) -> ApiError:
    return ApiRefusalError(
        422, "invalid_config", f"{len(exc.errors)} problem(s)", {"errors": exc.errors}
    )


def _invalid_publish_request(exc: PlanError) -> ApiError:
    return ApiRefusalError(422, "invalid_publish_request", str(exc))


_PUBLISH_REFUSALS: Translation = {PublishError: _refused}
_CONFIG_REFUSALS: Translation = {ConfigError: _invalid_config, PublishError: _refused}
_PLAN_REFUSALS: Translation = {PlanError: _invalid_publish_request}


@admin_route
async def create_config(request: Request, ctx: GatewayContext) -> Response:
    app_id = request.path_params["app_id"]
    body, _raw = await read_json_body(request, _MAX_CONFIG_BYTES)
    if not isinstance(body, dict):
        raise ApiRefusalError(422, "invalid_config", "a config is a JSON object")
    if contains_nul(body):
        raise ApiRefusalError(422, "invalid_text", "text must not contain NUL characters")
    with translated(_CONFIG_REFUSALS):
        snapshot, created = await _in_thread(ctx, lambda c: push_config(c, app_id, body, _ACTOR))
    return json_response(
        {"app_id": app_id, "version": snapshot.version, "checksum": snapshot.checksum},
        201 if created else 200,
    )


@admin_route
async def list_config_versions(request: Request, ctx: GatewayContext) -> Response:
    app_id = request.path_params["app_id"]
    snapshots = await _in_thread(ctx, lambda c: list_snapshots(c, app_id))
    return json_response(
        {
            "app_id": app_id,
            "versions": [
                {
                    "version": s.version,
                    "checksum": s.checksum,
                    "created_by": s.created_by,
                    "created_at": s.created_at.isoformat(),
                }
                for s in snapshots
            ],
        }
    )


@admin_route
async def get_config_version(request: Request, ctx: GatewayContext) -> Response:
    app_id, version = request.path_params["app_id"], _int_param(request, "version")
    if version is None:
        raise ApiRefusalError(404, "unknown_version", "a version is a positive integer")
    snapshot = await _in_thread(ctx, lambda c: get_snapshot(c, app_id, version))
    if snapshot is None:
        raise ApiRefusalError(404, "unknown_version", f"app {app_id!r} has no version {version}")
    return json_response(
        {"app_id": app_id, "version": version, "checksum": snapshot.checksum, "body": snapshot.body}
    )


@admin_route
async def start_publish_operation(request: Request, ctx: GatewayContext) -> Response:
    app_id = request.path_params["app_id"]
    body, _raw = await read_json_body(request, _MAX_CONFIG_BYTES)
    with translated(_PLAN_REFUSALS):
        if not isinstance(body, dict):
            raise PlanError("body: must be an object with version, plan, thresholds")
        version = body.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise PlanError("version: must be an integer")
        plan = parse_plan(body["plan"]) if "plan" in body else DEFAULT_PLAN
        thresholds = HealthThresholds.from_dict(body.get("thresholds"))
    with translated(_PUBLISH_REFUSALS):
        operation = await _in_thread(
            ctx, lambda c: start_publish(c, app_id, version, plan, _ACTOR, thresholds)
        )
    return json_response(_operation_json(operation), 202)


@admin_route
async def get_publish_operation(request: Request, ctx: GatewayContext) -> Response:
    operation_id = _int_param(request, "operation_id")
    if operation_id is None:
        raise ApiRefusalError(404, "unknown_operation", "an operation id is an integer")

    def read(conn: Any) -> tuple[PublishOperation | None, list[Any]]:
        return get_operation(conn, operation_id), list_transitions(conn, operation_id)

    operation, transitions = await _in_thread(ctx, read)
    if operation is None:
        raise ApiRefusalError(404, "unknown_operation", f"no publish operation {operation_id}")
    return json_response(
        {
            **_operation_json(operation),
            "transitions": [
                {
                    "from": t.from_state,
                    "to": t.to_state,
                    "stage": t.stage,
                    "rollout_percent": t.rollout_percent,
                    "reason": t.reason,
                    "actor": t.actor,
                    "at": t.at.isoformat(),
                }
                for t in transitions
            ],
        }
    )


@admin_route
async def rollback_publish_operation(request: Request, ctx: GatewayContext) -> Response:
    operation_id = _int_param(request, "operation_id")
    if operation_id is None:
        raise ApiRefusalError(404, "unknown_operation", "an operation id is an integer")
    body = await small_json_object(request)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ApiRefusalError(422, "reason_required", 'say why: {"reason": "..."}')
    with translated(_PUBLISH_REFUSALS):
        operation = await _in_thread(
            ctx, lambda c: request_rollback(c, operation_id, _ACTOR, reason[:500])
        )
    return json_response(_operation_json(operation), 202)


@admin_route
async def switch_degradation_profile(request: Request, ctx: GatewayContext) -> Response:
    app_id = request.path_params["app_id"]
    body = await small_json_object(request)
    profile, reason = body.get("profile"), body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ApiRefusalError(422, "reason_required", 'say why: {"reason": "..."}')
    if profile is not None and not isinstance(profile, str):
        raise ApiRefusalError(422, "invalid_profile", "profile: a name, or null to switch off")
    with translated(_PUBLISH_REFUSALS):
        switch = await _in_thread(
            ctx, lambda c: switch_degradation(c, app_id, profile, _ACTOR, reason[:500])
        )
    await refresh_catalog_quietly(ctx)  # this process at once; the others within a refresh
    return json_response(
        {"app_id": app_id, "profile": switch.profile, "switched_at": switch.switched_at.isoformat()}
    )
