"""The gateway's one error path: a route raises, one handler answers.

Handlers, and the helpers they call, never build an error response. They
raise an API error carrying the status, the API's error ``code``, the
message, optional ``details`` and headers (``Retry-After``,
``WWW-Authenticate``), and ``handle_api_error``, registered on the Starlette
app, renders it in the one error shape (docs/contracts.md, "HTTP API")::

    {"error": {"code": "...", "message": "...", "details": {...}}}

The two hot routes bypass Starlette's stack (gateway/app.py), so the app
calls the same renderer around them.

Two classes, as every project error is in exactly one family
(mediation/errors.py): ``ApiRefusalError`` (an ``InputError``) is a 4xx,
the caller must change the request or wait; ``ApiUnavailableError`` (a
``ServiceError``) is a 5xx, the gateway cannot serve it now. ``ApiError``
names either.

Errors of other layers (an unreadable body, an invalid request, a refused
key or publish operation, a broker that did not confirm) are translated
into API errors where the gateway meets them, once each, by ``translated``
(the shape of httpx's ``map_httpcore_exceptions``). Anything else a route
raises is a 500 ``internal_error`` in the same shape that tells nothing of
the failure; the traceback goes to the log with the request id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeAlias

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mediation.errors import InputError, ServiceError
from mediation.rules.validation import RequestInvalidError

__all__ = [
    "API_ERRORS",
    "EXCEPTION_HANDLERS",
    "REQUEST_REFUSALS",
    "ApiError",
    "ApiRefusalError",
    "ApiUnavailableError",
    "Translation",
    "api_error_response",
    "error_body",
    "handle_api_error",
    "internal_error_response",
    "translated",
]

INTERNAL_ERROR_MESSAGE = "unexpected error; quote the X-Request-Id to support"


class _ApiAnswerError(Exception):
    """What an API error carries to the handler: status, error code, message, details, headers.

    Mixed into one class per family of the error tree, so a refusal is an
    ``InputError`` and an outage a ``ServiceError`` while both render alike.
    """

    statuses: ClassVar[range]

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        if status_code not in self.statuses:
            family = f"{self.statuses.start // 100}xx"
            raise ValueError(f"{type(self).__name__} is a {family}, not {status_code}")
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})


class ApiRefusalError(_ApiAnswerError, InputError):
    """A request the API refuses with a 4xx: change it, or wait (``Retry-After``)."""

    code = "api_request_refused"
    statuses = range(400, 500)


class ApiUnavailableError(_ApiAnswerError, ServiceError):
    """A request the API cannot serve now: a 5xx (503: retry after ``Retry-After``)."""

    code = "api_unavailable"
    statuses = range(500, 600)


ApiError: TypeAlias = ApiRefusalError | ApiUnavailableError
API_ERRORS = (ApiRefusalError, ApiUnavailableError)


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> bytes:
    """The error shape every answer uses, as bytes (the server protocol writes it raw too)."""
    error = {"code": code, "message": message, "details": dict(details or {})}
    return orjson.dumps({"error": error})


def _error_response(
    status_code: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(code, message, details),
        status_code=status_code,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def api_error_response(error: ApiError) -> Response:
    """The answer to an API error: its status, the error shape, its headers."""
    return _error_response(
        error.status_code, error.code, error.message, error.details, error.headers
    )


def internal_error_response() -> Response:
    """The answer to an error nobody translated: a 500 that tells nothing of it."""
    return _error_response(500, "internal_error", INTERNAL_ERROR_MESSAGE)


async def handle_api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, API_ERRORS)
    return api_error_response(exc)


async def _handle_http_exception(_request: Request, exc: Exception) -> Response:
    # Starlette's own refusals (unknown path, method not allowed) answer in
    # the error shape too.
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _handle_unexpected(_request: Request, _exc: Exception) -> Response:
    # Starlette's last-resort handler (it re-raises after answering, so the
    # accounting middleware logs the traceback with the request id).
    return internal_error_response()


# What the Starlette app is created with: one handler for the API errors.
EXCEPTION_HANDLERS: Mapping[Any, Callable[[Request, Exception], Any]] = {
    ApiRefusalError: handle_api_error,
    ApiUnavailableError: handle_api_error,
    HTTPException: _handle_http_exception,
    Exception: _handle_unexpected,
}

# An error class of another layer -> the API error it becomes.
Translation = Mapping[type[Exception], Callable[[Any], ApiError]]


@contextlib.contextmanager
def translated(translation: Translation) -> Iterator[None]:
    """Raise what ``translation`` makes of an error it names, raised inside the block.

    The nearest class in the error's MRO decides, so a translation of a
    base class covers its subclasses; errors it does not name pass as they are.
    """
    try:
        yield
    except tuple(translation) as exc:
        for cls in type(exc).__mro__:
            make = translation.get(cls)
            if make is not None:
                raise make(exc) from exc
        raise  # pragma: no cover - tuple(translation) matched one of its keys


def _invalid_request(exc: RequestInvalidError) -> ApiError:
    return ApiRefusalError(422, exc.code, exc.message, exc.details)


# The rules' verdict on a whole request or batch envelope: 422 with its code.
REQUEST_REFUSALS: Translation = {RequestInvalidError: _invalid_request}
