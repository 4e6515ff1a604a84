"""Admin routes (bearer ``MEDIATION_ADMIN_TOKEN``): app write keys.

SDK write keys never open these routes. Without a configured token the
routes answer 503 ``admin_disabled`` rather than being open.

``admin_route`` makes a handler an admin route: the token is checked
before the handler runs, and it is handed the gateway's context.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from storage.keys import KeyOperationError, create_key, list_keys, revoke_key

from .context import GatewayContext, context_of
from .errors import ApiError, ApiRefusalError, ApiUnavailableError, Translation, translated
from .guards import check_auth_budget, count_auth_failure
from .http import json_response

__all__ = [
    "admin_route",
    "create_app_key",
    "list_app_keys",
    "refresh_catalog_quietly",
    "require_admin",
    "revoke_app_key",
]

log = logging.getLogger(__name__)

_MAX_PATH_PARAM = 256
# A refused key operation's status by its code (any other code: 422).
_KEY_ERROR_STATUS = {"unknown_app": 404, "unknown_key": 404, "too_many_active_keys": 409}


def require_admin(ctx: GatewayContext, request: Request) -> None:
    """Refuse a caller without the admin token (503 while no token is configured)."""
    token = ctx.settings.admin_token
    if token is None:
        raise ApiUnavailableError(
            503, "admin_disabled", "set MEDIATION_ADMIN_TOKEN to enable admin routes"
        )
    check_auth_budget(ctx, request)
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        count_auth_failure(ctx, request, "admin_token")
        raise ApiRefusalError(
            401,
            "admin_auth_required",
            "send Authorization: Bearer <admin token>",
            headers={"WWW-Authenticate": "Bearer"},
        )


AdminHandler = Callable[[Request, GatewayContext], Awaitable[Response]]


def admin_route(handler: AdminHandler) -> Callable[[Request], Awaitable[Response]]:
    """A route that answers only with the admin token; the handler gets the context."""

    @functools.wraps(handler)
    async def route(request: Request) -> Response:
        ctx = context_of(request)
        require_admin(ctx, request)
        if any("\x00" in v or len(v) > _MAX_PATH_PARAM for v in request.path_params.values()):
            # No app, key, version or operation is named so; Postgres text
            # cannot even hold a NUL.
            raise ApiRefusalError(404, "not_found", "no such resource")
        return await handler(request, ctx)

    return route


async def refresh_catalog_quietly(ctx: GatewayContext) -> None:
    # The change is committed: a failed refresh must not turn it into a 500
    # (a created key would be lost to its caller). The periodic refresh
    # catches up.
    try:
        await ctx.catalog.refresh()
    except Exception as exc:
        log.warning("catalog refresh after a key change failed: %s", exc)


def _refused_key_operation(exc: KeyOperationError) -> ApiError:
    return ApiRefusalError(_KEY_ERROR_STATUS.get(exc.code, 422), exc.code, str(exc))


_KEY_REFUSALS: Translation = {KeyOperationError: _refused_key_operation}


@admin_route
async def list_app_keys(request: Request, ctx: GatewayContext) -> Response:
    app_id = request.path_params["app_id"]
    keys = await asyncio.to_thread(list_keys, ctx.settings.database_url, app_id)
    return json_response(
        {
            "app_id": app_id,
            "keys": [
                {
                    "prefix": k.prefix,
                    "created_at": k.created_at.isoformat(),
                    "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                }
                for k in keys
            ],
        }
    )


@admin_route
async def create_app_key(request: Request, ctx: GatewayContext) -> Response:
    app_id = request.path_params["app_id"]
    with translated(_KEY_REFUSALS):
        raw = await asyncio.to_thread(create_key, ctx.settings.database_url, app_id, "admin-api")
    await refresh_catalog_quietly(ctx)  # this process at once; the others within a refresh cycle
    # The raw key is shown once; only its hash is stored.
    return json_response(
        {"app_id": app_id, "app_key": raw}, 201, headers={"Cache-Control": "no-store"}
    )


@admin_route
async def revoke_app_key(request: Request, ctx: GatewayContext) -> Response:
    app_id, prefix = request.path_params["app_id"], request.path_params["prefix"]
    with translated(_KEY_REFUSALS):
        await asyncio.to_thread(revoke_key, ctx.settings.database_url, app_id, prefix, "admin-api")
    await refresh_catalog_quietly(ctx)
    return json_response({"app_id": app_id, "revoked": prefix})
