"""Small HTTP helpers shared by the handlers: JSON bodies and error shapes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["BodyTooLargeError", "error_response", "json_response", "read_json_body"]


class BodyTooLargeError(ValueError):
    def __init__(self, limit_bytes: int):
        super().__init__(f"request body exceeds {limit_bytes} bytes")
        self.limit_bytes = limit_bytes


class _NotJsonError(ValueError):
    pass


def json_response(
    payload: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(payload),
        status_code=status_code,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return json_response(body, status_code, headers)


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """Read the body, refusing as soon as it passes ``limit_bytes``.

    Checked while reading, so a client cannot make us buffer more than the
    limit by lying in (or omitting) ``Content-Length``.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit_bytes:
        raise BodyTooLargeError(limit_bytes)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise BodyTooLargeError(limit_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_body(request: Request, limit_bytes: int) -> tuple[Any, bytes, Response | None]:
    """Return ``(document, raw bytes, None)`` or ``(None, b"", error response)``."""
    try:
        raw = await read_body(request, limit_bytes)
    except BodyTooLargeError as exc:
        return (
            None,
            b"",
            error_response(413, "body_too_large", str(exc), {"limit_bytes": exc.limit_bytes}),
        )
    try:
        return orjson.loads(raw), raw, None
    except orjson.JSONDecodeError as exc:
        return None, b"", error_response(400, "invalid_json", f"body is not valid JSON: {exc}")
