"""The request-head bounds under Granian: an ASGI wrapper, and the server's buffer.

Granian's HTTP/1 parser (hyper) keeps a head in a buffer of
``HTTP1_BUFFER_BYTES`` and answers a head that does not fit with its own
431 (no body) and closes: that bounds memory. A head that fits is handed to
the app, and this wrapper refuses one whose URL is over ``MAX_URL_BYTES``
or whose headers are over ``MAX_HEADER_BYTES`` exactly as uvicorn's
protocol does (``server_protocol.py``): 414 ``url_too_long`` or 431
``headers_too_large`` in the error shape, ``Connection: close``, before the
gateway app sees the request (so, as under uvicorn, no request id, no
metrics). The buffer is sized well above both limits so every head an SDK
could send, and every head just over a limit, gets the answer in the
error shape; only far larger heads get the parser's bare 431.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .server_protocol import MAX_HEADER_BYTES, MAX_URL_BYTES, refusal_body

__all__ = ["HTTP1_BUFFER_BYTES", "BoundedHead"]

HTTP1_BUFFER_BYTES = 64 * 1024


class BoundedHead:
    """Answers 414/431 in the error shape for an over-limit head; passes everything else."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            status = _refused_status(scope)
            if status:
                body = refusal_body(status)
                await send({"type": "http.response.start", "status": status, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                    (b"connection", b"close")]})  # fmt: skip
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _refused_status(scope: Scope) -> int:
    # The request target as sent: raw path, then "?" and the query.
    query = scope.get("query_string") or b""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    if len(raw_path) + (len(query) + 1 if query else 0) > MAX_URL_BYTES:
        return 414
    # As uvicorn's protocol counts them: name and value with ": " and CRLF.
    size = 0
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4
    return 431 if size > MAX_HEADER_BYTES else 0
