"""The admin and replay operations of the OpenAPI document (bearer admin token).

Keys (gateway/admin.py), configs and publishing (gateway/admin_configs.py),
replay (gateway/replay_api.py).
"""

from __future__ import annotations

from typing import Any

from .openapi_schemas import (
    INTEGER,
    PUBLISH_OPERATION,
    REPLAY_REQUEST,
    STRING,
    TIME,
    TRANSITIONS,
    body_errors,
    error_answer,
    json_answer,
    nullable,
    object_of,
    schema_ref,
)

__all__ = ["admin_paths"]


def admin_paths() -> dict[str, Any]:
    """Every operation that takes the admin token, by path."""
    paths: dict[str, Any] = {}
    admin: list[dict[str, list[str]]] = [{"AdminToken": []}]
    app_param = {"name": "app_id", "in": "path", "required": True, "schema": {"type": "string"}}
    admin_errors = {
        "401": error_answer("Missing or wrong admin token"),
        "503": error_answer("Admin routes disabled (no MEDIATION_ADMIN_TOKEN)"),
    }
    paths["/v1/admin/apps/{app_id}/keys"] = {
        "get": {
            "operationId": "list_app_keys",
            "summary": "List an app's write keys (prefixes only)",
            "security": admin,
            "parameters": [app_param],
            "responses": {"200": json_answer("keys", schema_ref("AppKeys")), **admin_errors},
        },
        "post": {
            "operationId": "create_app_key",
            "summary": "Create a write key (shown once; at most two active)",
            "security": admin,
            "parameters": [app_param],
            "responses": {
                "201": json_answer("the new key", object_of({"app_id": STRING, "app_key": STRING})),
                "404": error_answer("Unknown app"),
                "409": error_answer("Two active keys already"),
                **admin_errors,
            },
        },
    }
    paths["/v1/admin/apps/{app_id}/keys/{prefix}/revoke"] = {
        "post": {
            "operationId": "revoke_app_key",
            "summary": "Revoke a write key by its prefix",
            "security": admin,
            "parameters": [
                app_param,
                {
                    "name": "prefix",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": json_answer("revoked", object_of({"app_id": STRING, "revoked": STRING})),
                "404": error_answer("No such active key"),
                "422": error_answer("Prefix too short or ambiguous"),
                **admin_errors,
            },
        },
    }
    paths.update(_config_admin_paths(admin, app_param, admin_errors))
    paths.update(_replay_paths(admin, admin_errors))
    return paths


def _config_admin_paths(
    admin: list[dict[str, list[str]]],
    app_param: dict[str, Any],
    admin_errors: dict[str, Any],
) -> dict[str, Any]:
    """Configs and publish operations (gateway/admin_configs.py)."""

    def param(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}

    json_body = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    refused = error_answer("Refused; the error code says why (e.g. operation_active, not_latest)")
    operation = json_answer("the operation", schema_ref("PublishOperation"))
    version_schema = {"app_id": STRING, "version": INTEGER, "checksum": STRING}
    return {
        "/v1/admin/apps/{app_id}/configs": {
            "get": {
                "operationId": "list_config_versions",
                "summary": "List an app's config versions, newest first",
                "security": admin,
                "parameters": [app_param],
                "responses": {
                    "200": json_answer(
                        "versions",
                        object_of(
                            {
                                "app_id": STRING,
                                "versions": {
                                    "type": "array",
                                    "items": object_of(
                                        {
                                            "version": INTEGER,
                                            "checksum": STRING,
                                            "created_by": STRING,
                                            "created_at": TIME,
                                        }
                                    ),
                                },
                            }
                        ),
                    ),
                    **admin_errors,
                },
            },
            "post": {
                "operationId": "create_config",
                "summary": "Validate a config and store it as the app's next version",
                "security": admin,
                "parameters": [app_param],
                "requestBody": json_body,
                "responses": {
                    "200": json_answer(
                        "the same body as the latest version: unchanged", object_of(version_schema)
                    ),
                    "201": json_answer("stored as a new version", object_of(version_schema)),
                    **body_errors("1 MiB"),
                    "404": error_answer("Unknown app"),
                    "422": error_answer("Invalid config; details.errors lists every problem"),
                    **admin_errors,
                },
            },
        },
        "/v1/admin/apps/{app_id}/configs/{version}": {
            "get": {
                "operationId": "get_config_version",
                "summary": "One config version's body",
                "security": admin,
                "parameters": [app_param, param("version")],
                "responses": {
                    "200": json_answer(
                        "the version", object_of({**version_schema, "body": {"type": "object"}})
                    ),
                    "404": error_answer("Unknown version"),
                    **admin_errors,
                },
            }
        },
        "/v1/admin/apps/{app_id}/publish": {
            "post": {
                "operationId": "start_publish_operation",
                "summary": "Start publishing a version: {version, plan?, thresholds?}",
                "security": admin,
                "parameters": [app_param],
                "requestBody": json_body,
                "responses": {
                    "202": json_answer("the pending operation", schema_ref("PublishOperation")),
                    **body_errors("1 MiB"),
                    "404": error_answer("Unknown app or version"),
                    "409": refused,
                    "422": error_answer("Invalid plan or thresholds"),
                    **admin_errors,
                },
            }
        },
        "/v1/admin/apps/{app_id}/degradation": {
            "post": {
                "operationId": "switch_degradation_profile",
                "summary": "Switch a degradation profile on, or off with profile null",
                "security": admin,
                "parameters": [app_param],
                "requestBody": json_body,
                "responses": {
                    "200": json_answer(
                        "the profile now switched on (null: off)",
                        object_of(
                            {"app_id": STRING, "profile": nullable(STRING), "switched_at": TIME}
                        ),
                    ),
                    **body_errors("64 KiB"),
                    "404": error_answer("Unknown app"),
                    "422": error_answer("Profile not in the published config, or no reason"),
                    **admin_errors,
                },
            }
        },
        "/v1/admin/publish/{operation_id}": {
            "get": {
                "operationId": "get_publish_operation",
                "summary": "A publish operation and its transitions",
                "security": admin,
                "parameters": [param("operation_id")],
                "responses": {
                    "200": json_answer(
                        "the operation and its transitions",
                        object_of({**PUBLISH_OPERATION, "transitions": TRANSITIONS}),
                    ),
                    "404": error_answer("Unknown operation"),
                    **admin_errors,
                },
            }
        },
        "/v1/admin/publish/{operation_id}/rollback": {
            "post": {
                "operationId": "rollback_publish_operation",
                "summary": "Roll an operation back: every device gets the previous version",
                "security": admin,
                "parameters": [param("operation_id")],
                "requestBody": json_body,
                "responses": {
                    "202": operation,
                    **body_errors("64 KiB"),
                    "404": error_answer("Unknown operation"),
                    "409": refused,
                    "422": error_answer("No reason given"),
                    **admin_errors,
                },
            }
        },
    }


def _replay_paths(
    admin: list[dict[str, list[str]]], admin_errors: dict[str, Any]
) -> dict[str, Any]:
    """Replay (gateway/replay_api.py)."""
    return {
        "/v1/replay": {
            "post": {
                "operationId": "post_replay",
                "summary": "Replay by key or time range: small selections inline, large as jobs",
                "security": admin,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": REPLAY_REQUEST}},
                },
                "responses": {
                    "200": json_answer(
                        "done inline",
                        object_of(
                            {
                                "replay_id": INTEGER,
                                "status": {"type": "string", "enum": ["done"]},
                                "result_hash": STRING,
                                "summary": {"type": "object"},
                                "results": {"type": "array", "items": {"type": "object"}},
                            }
                        ),
                    ),
                    "202": json_answer(
                        "queued as a job; poll Location",
                        object_of(
                            {
                                "replay_id": INTEGER,
                                "status": {"type": "string", "enum": ["queued"]},
                                "location": STRING,
                            }
                        ),
                    ),
                    **body_errors("64 KiB"),
                    "400": error_answer("Not a small JSON object"),
                    "422": error_answer("Invalid replay request; the message says why"),
                    "429": error_answer("replay_throttled or replay_queue_full; see Retry-After"),
                    "503": error_answer("cold_storage_unavailable: a tiered day cannot be read"),
                    **admin_errors,
                },
            }
        },
        "/v1/replay/{replay_id}": {
            "get": {
                "operationId": "get_replay",
                "summary": "A replay: status, result hash, summary, where its result is",
                "security": admin,
                "parameters": [
                    {
                        "name": "replay_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    }
                ],
                "responses": {
                    "200": json_answer("the replay record", schema_ref("ReplayRecord")),
                    "404": error_answer("Unknown replay"),
                    **admin_errors,
                },
            }
        },
    }
