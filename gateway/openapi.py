"""The OpenAPI document served at ``/openapi.json`` (kept next to the handlers it describes).

Assembled here from the SDK operations below, the admin and replay ones
(``openapi_admin.py``) and the shared schemas (``openapi_schemas.py``).
"""

from __future__ import annotations

from typing import Any

from .openapi_admin import admin_paths
from .openapi_schemas import (
    STRING,
    body_errors,
    components,
    error_answer,
    json_answer,
    schema_ref,
)

__all__ = ["openapi_document"]


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
            responses.setdefault("414", error_answer("url_too_long: the URL exceeds 8 KiB"))
            responses.setdefault(
                "431", error_answer("headers_too_large: the headers exceed 16 KiB")
            )
            if "401" in responses:
                other = responses.get("429")
                both = throttled if other is None else f"{other['description']}; or {throttled}"
                responses["429"] = error_answer(both)


def openapi_document(roles: frozenset[str]) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Process alive",
                "responses": {"200": json_answer("ok", schema_ref("Health"))},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Whether the SDK routes can be served (Redis and Postgres are optional)",
                "responses": {
                    "200": json_answer(
                        "ready, or degraded (an optional dependency is down; degraded says why)",
                        schema_ref("Readiness"),
                    ),
                    "503": json_answer(
                        "not ready; failing says which and why", schema_ref("Readiness")
                    ),
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
                        "content": {"text/plain": {"schema": STRING}},
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
                    "401": error_answer("Unknown app key"),
                    **body_errors("the request limit"),
                    "400": error_answer("Body is not JSON, or the Idempotency-Key is unusable"),
                    "409": error_answer("No published config, or the Idempotency-Key is in flight"),
                    "422": error_answer(
                        "Invalid field, unknown placement, or Idempotency-Key reused"
                    ),
                    "429": error_answer("Over the app's request rate; retry after Retry-After"),
                    "503": error_answer("Broker did not confirm; retry after Retry-After"),
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
                    "200": json_answer("config, with ETag", schema_ref("PublishedConfig")),
                    "304": {"description": "not modified (If-None-Match)"},
                    "401": error_answer("Unknown app key"),
                    "404": error_answer("No published config"),
                    "422": error_answer("device_id empty or over 128 characters"),
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
                    **body_errors("1 MiB"),
                    "401": error_answer("Unknown app key"),
                    "422": error_answer("Invalid envelope"),
                    "429": error_answer("Over the app's batch rate; retry after Retry-After"),
                    "503": error_answer(
                        "Broker did not confirm; resend the batch after Retry-After"
                    ),
                },
            }
        }
    if "api" in roles:
        paths.update(admin_paths())
    _add_refusals_before_the_handler(paths)
    return {
        "openapi": "3.0.3",
        "info": {"title": "mediation gateway", "version": "1"},
        "paths": paths,
        "components": components(),
    }
