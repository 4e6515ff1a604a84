"""The OpenAPI document's building blocks and shared schemas (gateway/openapi.py assembles it).

The error shape here is the one ``gateway/errors.py`` renders.
"""

from __future__ import annotations

from typing import Any

from mediation.rules.model import EVENT_TYPES
from mediation.rules.validation import MAX_ATTRS, MAX_EVENTS_PER_BATCH, MAX_TS_MS, MIN_TS_MS

__all__ = [
    "CLIENT_TIME",
    "ERROR_SCHEMA",
    "ID",
    "INTEGER",
    "PUBLISH_OPERATION",
    "REPLAY_REQUEST",
    "STRING",
    "TIME",
    "TRANSITIONS",
    "ULID",
    "body_errors",
    "components",
    "error_answer",
    "json_answer",
    "nullable",
    "object_of",
    "schema_ref",
]

ERROR_SCHEMA = {
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
ULID = {"type": "string", "pattern": "^[0-7][0-9A-HJKMNP-TV-Z]{25}$"}
ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
# Client times: epoch ms in 2000..2100 (mediation/rules/validation.py).
CLIENT_TIME = {"type": "integer", "minimum": MIN_TS_MS, "maximum": MAX_TS_MS}


def error_answer(description: str) -> dict[str, Any]:
    return json_answer(description, schema_ref("Error"))


def schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def object_of(properties: dict[str, Any]) -> dict[str, Any]:
    """An answer's shape: every property listed is always there."""
    return {"type": "object", "required": list(properties), "properties": properties}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
TIME = {"type": "string", "format": "date-time"}


def body_errors(limit: str) -> dict[str, Any]:
    """What reading a body can refuse (gateway/http.py), for every operation that takes one."""
    return {
        "400": error_answer(
            "Body is not JSON (or not the JSON value the operation takes), or bad gzip"
        ),
        "413": error_answer(f"Body over {limit} (after gzip inflation)"),
        "415": error_answer("Content-Encoding other than gzip"),
    }


PUBLISH_OPERATION = {
    "id": INTEGER,
    "app_id": STRING,
    "version": INTEGER,
    "previous_version": nullable(INTEGER),
    "state": STRING,
    "stage": INTEGER,
    "rollout_percent": INTEGER,
    "plan": {"type": "array", "items": object_of({"percent": INTEGER, "dwell_ms": INTEGER})},
    "reason": nullable(STRING),
    "created_by": STRING,
    "updated_at": TIME,
}
TRANSITIONS = {
    "type": "array",
    "items": object_of(
        {
            "from": nullable(STRING),
            "to": STRING,
            "stage": nullable(INTEGER),
            "rollout_percent": nullable(INTEGER),
            "reason": STRING,
            "actor": nullable(STRING),
            "at": TIME,
        }
    ),
}
REPLAY_STATUS = {"type": "string", "enum": ["queued", "running", "done", "failed"]}
# A replay_records row as GET /v1/replay/{id} shows it (replay/jobs.py job_state).
REPLAY_RECORD = object_of(
    {
        "replay_id": INTEGER,
        "requested_by": STRING,
        "selector": {"type": "object"},
        "mode": STRING,
        "rule_version": nullable(STRING),
        "config_version": nullable(INTEGER),
        "status": REPLAY_STATUS,
        "result_hash": nullable(STRING),
        "summary": nullable({"type": "object"}),
        "records": nullable(INTEGER),
        "result_location": nullable(STRING),
        "error": nullable(STRING),
        "created_at": TIME,
        "finished_at": nullable(TIME),
        "format": nullable(STRING),
    }
)
INSTANT = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "format": "date-time"}]}
REPLAY_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "description": "opportunity_key(s), or from and to (half-open, on the opportunity's time)",
    "properties": {
        "opportunity_key": ULID,
        "opportunity_keys": {"type": "array", "items": ULID, "maxItems": 10_000},
        "from": INSTANT,
        "to": INSTANT,
        "app_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "placement_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "mode": {"type": "string", "enum": ["snapshot", "recompute"], "default": "snapshot"},
        "rule_version": {"type": "string"},
        "config_version": {"type": "integer", "minimum": 1},
        "format": {"type": "string", "enum": ["jsonl", "parquet"], "default": "jsonl"},
    },
}


def components() -> dict[str, Any]:
    """The security schemes and the schemas operations refer to."""
    return {
        "securitySchemes": {
            "AppKey": {"type": "apiKey", "in": "header", "name": "X-App-Key"},
            "AdminToken": {"type": "http", "scheme": "bearer"},
        },
        "schemas": {
            "Error": ERROR_SCHEMA,
            "Health": object_of({"status": {"type": "string", "enum": ["ok"]}}),
            "Readiness": object_of(
                {
                    "status": {"type": "string", "enum": ["ready", "degraded", "not_ready"]},
                    "checks": object_of(
                        {name: {"type": "boolean"} for name in ("postgres", "redis", "kafka")}
                    ),
                    # dependency -> why its absence matters
                    "degraded": {"type": "object", "additionalProperties": STRING},
                    "failing": {"type": "object", "additionalProperties": STRING},
                }
            ),
            "PublishedConfig": object_of(
                {
                    "app_id": STRING,
                    "rollout_bucket": nullable({"type": "integer", "minimum": 0}),
                    "version": INTEGER,
                    "checksum": STRING,
                    "config": {"type": "object"},
                }
            ),
            "AppKeys": object_of(
                {
                    "app_id": STRING,
                    "keys": {
                        "type": "array",
                        "items": object_of(
                            {
                                "prefix": STRING,
                                "created_at": TIME,
                                "revoked_at": nullable(TIME),
                            }
                        ),
                    },
                }
            ),
            "PublishOperation": object_of(PUBLISH_OPERATION),
            "ReplayRecord": REPLAY_RECORD,
            "SyncRequest": {
                "type": "object",
                "required": ["placement_id", "device_id", "ts_ms"],
                "properties": {
                    "placement_id": ID,
                    "device_id": {"type": "string", "minLength": 1, "maxLength": 128},
                    "ts_ms": CLIENT_TIME,
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
                    "opportunity_key": ULID,
                    "config_version": {"type": "integer"},
                    "delivery": {
                        "type": "object",
                        "properties": {
                            "delivery_id": ULID,
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
                    "event_id": ID,
                    "opportunity_key": ULID,
                    "type": {"type": "string", "enum": list(EVENT_TYPES)},
                    "ts": CLIENT_TIME,
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
                    "sent_at": CLIENT_TIME,
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
    }
