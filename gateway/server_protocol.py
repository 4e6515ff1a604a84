"""The gateway's HTTP/1.1 server protocol: uvicorn's httptools one, with a bounded request head.

uvicorn's httptools protocol buffers a request line and headers of any
size: a 64 MiB header was read in full and served, and a 16 MiB URL was
read in full before its 400. No SDK comes near ``MAX_URL_BYTES`` of URL
or ``MAX_HEADER_BYTES`` of headers, so past them the request is refused
as soon as the limit is passed, in the API's error shape: 414
``url_too_long``, 431 ``headers_too_large``. The connection is then
closed after a short linger (the rest of what the client sends is read
and dropped, so it sees the answer rather than a reset), and nothing it
sent is kept. Requests before the refused one on a keep-alive connection
(pipelined, or still being served) are answered first, in order; the
refusal follows the last of them.

Counted as it arrives: the URL as the parser hands it over; each header
when complete; and, for a head still incomplete, every further chunk
the socket delivers, so one endless header costs at most the limit plus
one read. Served with ``uvicorn --http gateway.server_protocol:LimitedHttpToolsProtocol``
(``mediation api`` does so); under Granian, ``granian_head.py`` gives the
same answers.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .errors import error_body

__all__ = ["MAX_HEADER_BYTES", "MAX_URL_BYTES", "LimitedHttpToolsProtocol", "refusal_body"]

MAX_URL_BYTES = 8 * 1024
# Header names and values, with each line's ": " and CRLF.
MAX_HEADER_BYTES = 16 * 1024
# The request line's method and version besides its URL.
_REQUEST_LINE_SLACK = 64
_LINGER_S = 2.0


def refusal_body(status: int) -> bytes:
    """The error-shape body of a refused head: 414 ``url_too_long`` or 431 ``headers_too_large``."""
    if status == 414:
        return error_body(
            "url_too_long",
            f"the request URL exceeds {MAX_URL_BYTES} bytes",
            {"limit_bytes": MAX_URL_BYTES},
        )
    return error_body(
        "headers_too_large",
        f"the request headers exceed {MAX_HEADER_BYTES} bytes",
        {"limit_bytes": MAX_HEADER_BYTES},
    )


def _refusal(status: int) -> bytes:
    body = refusal_body(status)
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = 0  # the status answered, once the head was refused
        self._in_head = False  # a request has begun and its headers are not complete
        self._messages = 0  # requests begun on this connection
        self._header_bytes = 0  # complete headers of the current request
        self._head_bytes = 0  # chunks received wholly inside the current head

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered; dropping the rest until the connection closes
        messages, in_head = self._messages, self._in_head
        super().data_received(data)
        if not self._refused and in_head and self._in_head and messages == self._messages:
            # The whole chunk belongs to a head that is still not complete.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_URL_BYTES + _REQUEST_LINE_SLACK + MAX_HEADER_BYTES:
                self._refused = 431
        if self._refused:
            self._refuse()

    def _refuse(self) -> None:
        transport = self.transport
        if transport.is_closing() or self._earlier_unanswered():
            return  # on_response_complete answers once the earlier requests are
        transport.write(_refusal(self._refused))
        if transport.can_write_eof():
            transport.write_eof()
        # Read (and drop) what is still coming for a moment, so the client
        # reads the answer instead of a connection reset; then close.
        self.loop.call_later(_LINGER_S, transport.close)

    def _earlier_unanswered(self) -> bool:
        # Earlier requests on this keep-alive connection (pipelined, or one
        # still being served) are answered first, in order: the refusal
        # written now would reach the client as their answer.
        cycle = self.cycle
        return bool(self.pipeline) or (cycle is not None and not cycle.response_complete)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refused:
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._messages += 1
        self._header_bytes = self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        if len(self.url) + len(url) > MAX_URL_BYTES:
            self._refused = 414
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refused = 431
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()
