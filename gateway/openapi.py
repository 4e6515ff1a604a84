"""The OpenAPI document served at ``/openapi.json`` (kept next to the handlers it describes)."""

from __future__ import annotations

from typing import Any

from mediation.rules.model import EVENT_TYPES
from mediation.rules.validation import MAX_ATTRS, MAX_EVENTS_PER_BATCH, MAX_TS_MS, MIN_TS_MS

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
# Client times: epoch ms in 2000..2100 (mediation/rules/validation.py).
_TS = {"type": "integer", "minimum": MIN_TS_MS, "maximum": MAX_TS_MS}


def _err(description: str) -> dict[str, Any]:
    return _json(description, _ref("Error"))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """An answer's shape: every property listed is always there."""
    return {"type": "object", "required": list(properties), "properties": properties}


_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_TIME = {"type": "string", "format": "date-time"}


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


def _body_errors(limit: str) -> dict[str, Any]:
    """What reading a body can refuse (gateway/http.py), for every operation that takes one."""
    return {
        "400": _err("Body is not JSON (or not the JSON value the operation takes), or bad gzip"),
        "413": _err(f"Body over {limit} (after gzip inflation)"),
        "415": _err("Content-Encoding other than gzip"),
    }


def openapi_document(roles: frozenset[str]) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Process alive",
                "responses": {"200": _json("ok", _ref("Health"))},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Whether the SDK routes can be served (Redis and Postgres are optional)",
                "responses": {
                    "200": _json(
                        "ready, or degraded (an optional dependency is down; degraded says why)",
                        _ref("Readiness"),
                    ),
                    "503": _json("not ready; failing says which and why", _ref("Readiness")),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "text exposition",
                        "content": {"text/plain": {"schema": _STRING}},
                    }
                },
            }
        },
    }
    security: list[dict[str, list[str]]] = [{"AppKey": []}]
    if "api" in roles:
        paths["/v1/requests"] = {
            "post": {
                "operationId": "post_request",
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
                    **_body_errors("the request limit"),
                    "400": _err("Body is not JSON, or the Idempotency-Key is unusable"),
                    "409": _err("No published config, or the Idempotency-Key is in flight"),
                    "422": _err("Invalid field, unknown placement, or Idempotency-Key reused"),
                    "429": _err("Over the app's request rate; retry after Retry-After"),
                    "503": _err("Broker did not confirm; retry after Retry-After"),
                },
            }
        }
        paths["/v1/config"] = {
            "get": {
                "operationId": "get_config",
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
                    "200": _json("config, with ETag", _ref("PublishedConfig")),
                    "304": {"description": "not modified (If-None-Match)"},
                    "401": _err("Unknown app key"),
                    "404": _err("No published config"),
                    "422": _err("device_id empty or over 128 characters"),
                },
            }
        }
    if "ingest" in roles:
        paths["/v1/events"] = {
            "post": {
                "operationId": "post_events",
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
                    **_body_errors("1 MiB"),
                    "401": _err("Unknown app key"),
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
                "operationId": "list_app_keys",
                "summary": "List an app's write keys (prefixes only)",
                "security": admin,
                "parameters": [app_param],
                "responses": {"200": _json("keys", _ref("AppKeys")), **admin_errors},
            },
            "post": {
                "operationId": "create_app_key",
                "summary": "Create a write key (shown once; at most two active)",
                "security": admin,
                "parameters": [app_param],
                "responses": {
                    "201": _json("the new key", _object({"app_id": _STRING, "app_key": _STRING})),
                    "404": _err("Unknown app"),
                    "409": _err("Two active keys already"),
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
                    "200": _json("revoked", _object({"app_id": _STRING, "revoked": _STRING})),
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
                "Health": _object({"status": {"type": "string", "enum": ["ok"]}}),
                "Readiness": _object(
                    {
                        "status": {"type": "string", "enum": ["ready", "degraded", "not_ready"]},
                        "checks": _object(
                            {name: {"type": "boolean"} for name in ("postgres", "redis", "kafka")}
                        ),
                        # dependency -> why its absence matters
                        "degraded": {"type": "object", "additionalProperties": _STRING},
                        "failing": {"type": "object", "additionalProperties": _STRING},
                    }
                ),
                "PublishedConfig": _object(
                    {
                        "app_id": _STRING,
                        "rollout_bucket": _nullable({"type": "integer", "minimum": 0}),
                        "version": _INTEGER,
                        "checksum": _STRING,
                        "config": {"type": "object"},
                    }
                ),
                "AppKeys": _object(
                    {
                        "app_id": _STRING,
                        "keys": {
                            "type": "array",
                            "items": _object(
                                {
                                    "prefix": _STRING,
                                    "created_at": _TIME,
                                    "revoked_at": _nullable(_TIME),
                                }
                            ),
                        },
                    }
                ),
                "PublishOperation": _object(_PUBLISH_OPERATION),
                "ReplayRecord": _REPLAY_RECORD,
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
                                "required": ["index", "event_id", "code", "message"],
                                "properties": {
                                    "index": {"type": "integer"},
                                    # null when the event had no string event_id
                                    "event_id": {"type": "string", "nullable": True},
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
    operation = _json("the operation", _ref("PublishOperation"))
    version_schema = {"app_id": _STRING, "version": _INTEGER, "checksum": _STRING}
    return {
        "/v1/admin/apps/{app_id}/configs": {
            "get": {
                "operationId": "list_config_versions",
                "summary": "List an app's config versions, newest first",
                "security": admin,
                "parameters": [app_param],
                "responses": {
                    "200": _json(
                        "versions",
                        _object(
                            {
                                "app_id": _STRING,
                                "versions": {
                                    "type": "array",
                                    "items": _object(
                                        {
                                            "version": _INTEGER,
                                            "checksum": _STRING,
                                            "created_by": _STRING,
                                            "created_at": _TIME,
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
                    "200": _json(
                        "the same body as the latest version: unchanged", _object(version_schema)
                    ),
                    "201": _json("stored as a new version", _object(version_schema)),
                    **_body_errors("1 MiB"),
                    "404": _err("Unknown app"),
                    "422": _err("Invalid config; details.errors lists every problem"),
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
                    "200": _json(
                        "the version", _object({**version_schema, "body": {"type": "object"}})
                    ),
                    "404": _err("Unknown version"),
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
                    "202": _json("the pending operation", _ref("PublishOperation")),
                    **_body_errors("1 MiB"),
                    "404": _err("Unknown app or version"),
                    "409": refused,
                    "422": _err("Invalid plan or thresholds"),
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
                    "200": _json(
                        "the profile now switched on (null: off)",
                        _object(
                            {"app_id": _STRING, "profile": _nullable(_STRING), "switched_at": _TIME}
                        ),
                    ),
                    **_body_errors("64 KiB"),
                    "404": _err("Unknown app"),
                    "422": _err("Profile not in the published config, or no reason"),
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
                    "200": _json(
                        "the operation and its transitions",
                        _object({**_PUBLISH_OPERATION, "transitions": _TRANSITIONS}),
                    ),
                    "404": _err("Unknown operation"),
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
                    **_body_errors("64 KiB"),
                    "404": _err("Unknown operation"),
                    "409": refused,
                    "422": _err("No reason given"),
                    **admin_errors,
                },
            }
        },
    }


_PUBLISH_OPERATION = {
    "id": _INTEGER,
    "app_id": _STRING,
    "version": _INTEGER,
    "previous_version": _nullable(_INTEGER),
    "state": _STRING,
    "stage": _INTEGER,
    "rollout_percent": _INTEGER,
    "plan": {"type": "array", "items": _object({"percent": _INTEGER, "dwell_ms": _INTEGER})},
    "reason": _nullable(_STRING),
    "created_by": _STRING,
    "updated_at": _TIME,
}
_TRANSITIONS = {
    "type": "array",
    "items": _object(
        {
            "from": _nullable(_STRING),
            "to": _STRING,
            "stage": _nullable(_INTEGER),
            "rollout_percent": _nullable(_INTEGER),
            "reason": _STRING,
            "actor": _nullable(_STRING),
            "at": _TIME,
        }
    ),
}
_REPLAY_STATUS = {"type": "string", "enum": ["queued", "running", "done", "failed"]}
# A replay_records row as GET /v1/replay/{id} shows it (replay/jobs.py job_state).
_REPLAY_RECORD = _object(
    {
        "replay_id": _INTEGER,
        "requested_by": _STRING,
        "selector": {"type": "object"},
        "mode": _STRING,
        "rule_version": _nullable(_STRING),
        "config_version": _nullable(_INTEGER),
        "status": _REPLAY_STATUS,
        "result_hash": _nullable(_STRING),
        "summary": _nullable({"type": "object"}),
        "records": _nullable(_INTEGER),
        "result_location": _nullable(_STRING),
        "error": _nullable(_STRING),
        "created_at": _TIME,
        "finished_at": _nullable(_TIME),
        "format": _nullable(_STRING),
    }
)
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
                "operationId": "post_replay",
                "summary": "Replay by key or time range: small selections inline, large as jobs",
                "security": admin,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _REPLAY_REQUEST}},
                },
                "responses": {
                    "200": _json(
                        "done inline",
                        _object(
                            {
                                "replay_id": _INTEGER,
                                "status": {"type": "string", "enum": ["done"]},
                                "result_hash": _STRING,
                                "summary": {"type": "object"},
                                "results": {"type": "array", "items": {"type": "object"}},
                            }
                        ),
                    ),
                    "202": _json(
                        "queued as a job; poll Location",
                        _object(
                            {
                                "replay_id": _INTEGER,
                                "status": {"type": "string", "enum": ["queued"]},
                                "location": _STRING,
                            }
                        ),
                    ),
                    **_body_errors("64 KiB"),
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
                    "200": _json("the replay record", _ref("ReplayRecord")),
                    "404": _err("Unknown replay"),
                    **admin_errors,
                },
            }
        },
    }
