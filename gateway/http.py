"""Small HTTP helpers shared by the handlers: reading bodies, answering JSON.

A body that cannot be read as sent is a ``BodyError`` where it is read
(``read_body``) and an API error where a handler asks for it
(``read_json_body``, ``small_json_object``): each kind has its status and
code, so a new kind of unreadable body is a 4xx on every route at once.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from mediation.errors import InputError

from .errors import ApiError, ApiRefusalError, Translation, translated

__all__ = [
    "BodyError",
    "BodyTooLargeError",
    "InvalidGzipError",
    "UnsupportedEncodingError",
    "contains_nul",
    "decimal_int",
    "json_response",
    "read_body",
    "read_json_body",
    "small_json_object",
]


class BodyError(InputError):
    """A body that cannot be read as sent: each kind has its status and error code."""

    status_code = 400
    code = "invalid_body"

    def details(self) -> dict[str, Any]:
        return {}


class BodyTooLargeError(BodyError):
    status_code = 413
    code = "body_too_large"

    def __init__(self, limit_bytes: int):
        super().__init__(f"request body exceeds {limit_bytes} bytes")
        self.limit_bytes = limit_bytes

    def details(self) -> dict[str, Any]:
        return {"limit_bytes": self.limit_bytes}


class UnsupportedEncodingError(BodyError):
    status_code = 415
    code = "unsupported_encoding"


class InvalidGzipError(BodyError):
    status_code = 400
    code = "invalid_gzip"


def json_response(
    payload: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(payload),
        status_code=status_code,
        media_type="application/json",
        headers=dict(headers or {}),
    )


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """Read the body, refusing as soon as it passes ``limit_bytes``.

    Checked while reading, so a client cannot make us buffer more than the
    limit by lying in (or omitting) ``Content-Length``. ``Content-Encoding:
    gzip`` bodies are inflated as they arrive with the same cap on the
    inflated size, so a gzip bomb costs at most ``limit_bytes`` of memory.
    """
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise UnsupportedEncodingError(f"Content-Encoding {encoding!r} is not supported; use gzip")
    declared = decimal_int(request.headers.get("content-length", ""), 20)
    if declared is not None and declared > limit_bytes:
        raise BodyTooLargeError(limit_bytes)
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    chunks = []
    received = size = 0
    async for received_chunk in request.stream():
        received += len(received_chunk)
        if received > limit_bytes:
            raise BodyTooLargeError(limit_bytes)
        chunk = received_chunk
        if inflate is not None:
            try:
                # max_length: never inflate more than one byte past the cap.
                chunk = inflate.decompress(received_chunk, limit_bytes - size + 1)
            except zlib.error as exc:
                raise InvalidGzipError(f"body is not valid gzip: {exc}") from None
            if inflate.unconsumed_tail:
                raise BodyTooLargeError(limit_bytes)
        size += len(chunk)
        if size > limit_bytes:
            raise BodyTooLargeError(limit_bytes)
        chunks.append(chunk)
    if inflate is not None and not inflate.eof:
        raise InvalidGzipError("body is truncated gzip")
    if inflate is not None and inflate.unused_data:
        raise InvalidGzipError("body has data after the gzip stream (one member only)")
    return b"".join(chunks)


def _refused_body(exc: BodyError) -> ApiError:
    return ApiRefusalError(exc.status_code, exc.code, str(exc), exc.details())


_BODY_REFUSALS: Translation = {BodyError: _refused_body}


def decimal_int(text: str, max_digits: int) -> int | None:
    """``text`` as a non-negative integer if it is 1..``max_digits`` ASCII digits, else None.

    ``str.isdigit`` alone is not enough: it accepts digits ``int`` refuses
    (superscripts such as "\u00b2") and digits of other scripts.
    """
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


async def read_json_body(request: Request, limit_bytes: int) -> tuple[Any, bytes]:
    """The body's JSON document and its raw bytes; raises the API error to answer."""
    with translated(_BODY_REFUSALS):
        raw = await read_body(request, limit_bytes)
    try:
        return orjson.loads(raw), raw
    except orjson.JSONDecodeError as exc:
        raise ApiRefusalError(400, "invalid_json", f"body is not valid JSON: {exc}") from exc


async def small_json_object(request: Request) -> dict[str, Any]:
    """A small JSON object body (an empty body reads as ``{}``); raises the API error to answer."""
    with translated(_BODY_REFUSALS):
        raw = await read_body(request, 64 * 1024)
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise ApiRefusalError(400, "invalid_json", "body must be a small JSON object")
    if contains_nul(body):
        raise ApiRefusalError(422, "invalid_text", "text must not contain NUL characters")
    return body


def contains_nul(value: Any) -> bool:
    """Whether a decoded JSON value holds a NUL character anywhere (Postgres text refuses it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(v) for v in value)
    return False
