"""The OpenAPI document served at ``/openapi.json`` (kept next to the handlers it describes)."""

from __future__ import annotations

from typing import Any

from mediation.rules.model import EVENT_TYPES
from mediation.rules.validation import MAX_ATTRS, MAX_EVENTS_PER_BATCH

__all__ = ["openapi_document"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}
_ULID = {"type": "string", "pattern": "^[0-7][0-9A-HJKMNP-TV-Z]{25}$"}
_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_TS = {"type": "integer", "minimum": 1, "maximum": 2**53 - 1}


def _err(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _add_refusals_before_the_handler(paths: dict[str, Any]) -> None:
    """What any operation may answer before its handler runs.

    The server refuses an oversized request head (gateway/server_protocol.py),
    and every authenticated operation refuses an address that failed
    authentication too often (gateway/guards.py).
    """
    throttled = "auth_throttled: too many failed authentications; retry after Retry-After"
    for operations in paths.values():
        for operation in operations.values():
            responses = operation["responses"]
            responses.setdefault("414", _err("url_too_long: the URL exceeds 8 KiB"))
            responses.setdefault("431", _err("headers_too_large: the headers exceed 16 KiB"))
            if "401" in responses:
                other = responses.get("429")
                both = throttled if other is None else f"{other['description']}; or {throttled}"
                responses["429"] = _err(both)


def openapi_document(roles: frozenset[str]) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {"summary": "Process alive", "responses": {"200": {"description": "ok"}}}
        },
        "/readyz": {
            "get": {
                "summary": "Whether the SDK routes can be served (Redis is optional)",
                "responses": {
                    "200": {"description": "ready, or degraded (Redis down; degraded says why)"},
                    "503": {"description": "not ready; failing says which and why"},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition"}},
            }
        },
    }
    security: list[dict[str, list[str]]] = [{"AppKey": []}]
    if "api" in roles:
        paths["/v1/requests"] = {
            "post": {
                "summary": "Sync request: which ad sources to try for a slot",
                "security": security,
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "8..255 printable ASCII chars; same key + same body replays "
                        "the stored response for 24 h",
                        "schema": {"type": "string", "minLength": 8, "maxLength": 255},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/SyncRequest"}}
                    },
                },
                "responses": {
                    "200": {
                        "description": "Delivery decided; the opportunity is on Kafka",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/SyncResponse"}
                            }
                        },
                    },
                    "401": _err("Unknown app key"),
                    "400": _err("Body is not JSON, or the Idempotency-Key is unusable"),
                    "409": _err("No published config, or the Idempotency-Key is in flight"),
                    "413": _err("Body too large"),
                    "422": _err("Invalid field, unknown placement, or Idempotency-Key reused"),
                    "429": _err("Over the app's request rate; retry after Retry-After"),
                    "503": _err("Broker did not confirm; retry after Retry-After"),
                },
            }
        }
        paths["/v1/config"] = {
            "get": {
                "summary": "The config the caller's rollout bucket should see",
                "security": security,
                "parameters": [
                    {
                        "name": "device_id",
                        "in": "query",
                        "required": False,
                        "description": "decides the rollout bucket; without it, the stable config",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                    }
                ],
                "responses": {
                    "200": {"description": "config, with ETag"},
                    "304": {"description": "not modified (If-None-Match)"},
                    "401": _err("Unknown app key"),
                    "404": _err("No published config"),
                },
            }
        }
    if "ingest" in roles:
        paths["/v1/events"] = {
            "post": {
                "summary": "Batched SDK events; per-item errors; ACK = broker-confirmed",
                "security": security,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}}
                    },
                },
                "responses": {
                    "200": {
                        "description": "accepted count and per-item rejections",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/EventBatchResult"}
                            }
                        },
                    },
                    "400": _err("Body is not JSON or not valid gzip"),
                    "401": _err("Unknown app key"),
                    "413": _err("Body over 1 MiB (after gzip inflation)"),
                    "415": _err("Content-Encoding other than gzip"),
                    "422": _err("Invalid envelope"),
                    "429": _err("Over the app's batch rate; retry after Retry-After"),
                    "503": _err("Broker did not confirm; resend the batch after Retry-After"),
                },
            }
        }
    if "api" in roles:
        admin: list[dict[str, list[str]]] = [{"AdminToken": []}]
        app_param = {"name": "app_id", "in": "path", "required": True, "schema": {"type": "string"}}
        admin_errors = {
            "401": _err("Missing or wrong admin token"),
            "503": _err("Admin routes disabled (no MEDIATION_ADMIN_TOKEN)"),
        }
        paths["/v1/admin/apps/{app_id}/keys"] = {
            "get": {
                "summary": "List an app's write keys (prefixes only)",
                "security": admin,
                "parameters": [app_param],
                "responses": {"200": {"description": "keys"}, **admin_errors},
            },
            "post": {
                "summary": "Create a write key (shown once; at most two active)",
                "security": admin,
                "parameters": [app_param],
                "responses": {
                    "201": {"description": "the new key"},
                    "404": _err("Unknown app"),
                    "409": _err("Two active keys already"),
                    **admin_errors,
                },
            },
        }
        paths["/v1/admin/apps/{app_id}/keys/{prefix}/revoke"] = {
            "post": {
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
                    "200": {"description": "revoked"},
                    "404": _err("No such active key"),
                    "422": _err("Prefix too short or ambiguous"),
                    **admin_errors,
                },
            },
        }
        paths.update(_config_admin_paths(admin, app_param, admin_errors))
        paths.update(_replay_paths(admin, admin_errors))
    _add_refusals_before_the_handler(paths)
    return {
        "openapi": "3.0.3",
        "info": {"title": "mediation gateway", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "AppKey": {"type": "apiKey", "in": "header", "name": "X-App-Key"},
                "AdminToken": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Error": _ERROR,
                "SyncRequest": {
                    "type": "object",
                    "required": ["placement_id", "device_id", "ts_ms"],
                    "properties": {
                        "placement_id": _ID,
                        "device_id": {"type": "string", "minLength": 1, "maxLength": 128},
                        "ts_ms": _TS,
                        "context": {
                            "type": "object",
                            "maxProperties": 8,
                            "additionalProperties": {"type": "string", "maxLength": 64},
                        },
                    },
                },
                "SyncResponse": {
                    "type": "object",
                    "properties": {
                        "opportunity_key": _ULID,
                        "config_version": {"type": "integer"},
                        "delivery": {
                            "type": "object",
                            "properties": {
                                "delivery_id": _ULID,
                                "status": {"type": "string", "enum": ["fill", "no_fill"]},
                                "waterfall": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "source_id": {"type": "string"},
                                            "floor_micros": {"type": "integer"},
                                            "timeout_ms": {"type": "integer"},
                                        },
                                    },
                                },
                                "expires_at_ms": {"type": "integer"},
                            },
                        },
                    },
                },
                "Event": {
                    "type": "object",
                    "required": ["event_id", "opportunity_key", "type", "ts"],
                    "properties": {
                        "event_id": _ID,
                        "opportunity_key": _ULID,
                        "type": {"type": "string", "enum": list(EVENT_TYPES)},
                        "ts": _TS,
                        "source_id": {"type": "string"},
                        "revenue_micros": {"type": "integer", "minimum": 0},
                        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                        "attrs": {"type": "object", "maxProperties": MAX_ATTRS},
                    },
                },
                "EventBatch": {
                    "type": "object",
                    "required": ["sent_at", "sdk", "events"],
                    "properties": {
                        "sent_at": _TS,
                        "sdk": {"type": "string", "minLength": 1, "maxLength": 64},
                        "events": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_EVENTS_PER_BATCH,
                            "items": {"$ref": "#/components/schemas/Event"},
                        },
                    },
                },
                "EventBatchResult": {
                    "type": "object",
                    "properties": {
                        "accepted": {"type": "integer"},
                        "rejected": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "index": {"type": "integer"},
                                    "event_id": {"type": "string"},
                                    "code": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    }


def _config_admin_paths(
    admin: list[dict[str, list[str]]],
    app_param: dict[str, Any],
    admin_errors: dict[str, Any],
) -> dict[str, Any]:
    """Configs and publish operations (gateway/admin_configs.py)."""

    def param(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}

    json_body = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    refused = _err("Refused; the error code says why (e.g. operation_active, not_latest)")
    return {
        "/v1/admin/apps/{app_id}/configs": {
            "get": {
                "summary": "List an app's config versions, newest first",
                "security": admin,
                "parameters": [app_param],
                "responses": {"200": {"description": "versions"}, **admin_errors},
            },
            "post": {
                "summary": "Validate a config and store it as the app's next version",
                "security": admin,
                "parameters": [app_param],
                "requestBody": json_body,
                "responses": {
                    "200": {"description": "the same body as the latest version: unchanged"},
                    "201": {"description": "stored as a new version"},
                    "404": _err("Unknown app"),
                    "422": _err("Invalid config; details.errors lists every problem"),
                    **admin_errors,
                },
            },
        },
        "/v1/admin/apps/{app_id}/configs/{version}": {
            "get": {
                "summary": "One config version's body",
                "security": admin,
                "parameters": [app_param, param("version")],
                "responses": {
                    "200": {"description": "the version"},
                    "404": _err("Unknown version"),
                    **admin_errors,
                },
            }
        },
        "/v1/admin/apps/{app_id}/publish": {
            "post": {
                "summary": "Start publishing a version: {version, plan?, thresholds?}",
                "security": admin,
                "parameters": [app_param],
                "requestBody": json_body,
                "responses": {
                    "202": {"description": "the pending operation"},
                    "404": _err("Unknown app or version"),
                    "409": refused,
                    "422": _err("Invalid plan or thresholds"),
                    **admin_errors,
                },
            }
        },
        "/v1/admin/apps/{app_id}/degradation": {
            "post": {
                "summary": "Switch a degradation profile on, or off with profile null",
                "security": admin,
                "parameters": [app_param],
                "requestBody": json_body,
                "responses": {
                    "200": {"description": "the profile now switched on (null: off)"},
                    "404": _err("Unknown app"),
                    "422": _err("Profile not in the published config, or no reason"),
                    **admin_errors,
                },
            }
        },
        "/v1/admin/publish/{operation_id}": {
            "get": {
                "summary": "A publish operation and its transitions",
                "security": admin,
                "parameters": [param("operation_id")],
                "responses": {
                    "200": {"description": "the operation"},
                    "404": _err("Unknown operation"),
                    **admin_errors,
                },
            }
        },
        "/v1/admin/publish/{operation_id}/rollback": {
            "post": {
                "summary": "Roll an operation back: every device gets the previous version",
                "security": admin,
                "parameters": [param("operation_id")],
                "requestBody": json_body,
                "responses": {
                    "202": {"description": "rolling back"},
                    "404": _err("Unknown operation"),
                    "409": refused,
                    "422": _err("No reason given"),
                    **admin_errors,
                },
            }
        },
    }


_INSTANT = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "format": "date-time"}]}
_REPLAY_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "description": "opportunity_key(s), or from and to (half-open, on the opportunity's time)",
    "properties": {
        "opportunity_key": _ULID,
        "opportunity_keys": {"type": "array", "items": _ULID, "maxItems": 10_000},
        "from": _INSTANT,
        "to": _INSTANT,
        "app_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "placement_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "mode": {"type": "string", "enum": ["snapshot", "recompute"], "default": "snapshot"},
        "rule_version": {"type": "string"},
        "config_version": {"type": "integer", "minimum": 1},
        "format": {"type": "string", "enum": ["jsonl", "parquet"], "default": "jsonl"},
    },
}


def _replay_paths(
    admin: list[dict[str, list[str]]], admin_errors: dict[str, Any]
) -> dict[str, Any]:
    """Replay (gateway/replay_api.py)."""
    return {
        "/v1/replay": {
            "post": {
                "summary": "Replay by key or time range: small selections inline, large as jobs",
                "security": admin,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _REPLAY_REQUEST}},
                },
                "responses": {
                    "200": {"description": "done: replay_id, result_hash, summary, results"},
                    "202": {"description": "queued as a job; poll Location"},
                    "400": _err("Not a small JSON object"),
                    "422": _err("Invalid replay request; the message says why"),
                    "429": _err("replay_throttled or replay_queue_full; see Retry-After"),
                    "503": _err("cold_storage_unavailable: a tiered day cannot be read"),
                    **admin_errors,
                },
            }
        },
        "/v1/replay/{replay_id}": {
            "get": {
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
                    "200": {"description": "the replay record"},
                    "404": _err("Unknown replay"),
                    **admin_errors,
                },
            }
        },
    }
