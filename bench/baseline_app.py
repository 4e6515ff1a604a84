"""Baselines for the gateway benchmark, served the same way as the gateway.

- ``POST /bare``: read the body, answer a small JSON (no work at all).
- ``POST /produce1``: also produce one message and await the broker's
  confirmation (what the sync path must do at minimum).
- ``POST /produce50``: produce 50 messages and await all confirmations
  (what an event batch must do at minimum).

Started by ``bench/gateway_bench.py`` as
``uvicorn --factory bench.baseline_app:create``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.producer import AsyncProducer

_VALUE = b"x" * 400


def create() -> Starlette:
    topic = os.environ["BENCH_TOPIC"]
    state: dict[str, AsyncProducer] = {}

    async def bare(request: Request) -> Response:
        await request.body()
        return Response(orjson.dumps({"ok": True}), media_type="application/json")

    async def produce(request: Request, count: int) -> Response:
        await request.body()
        messages = [(str(i).encode(), _VALUE) for i in range(count)]
        await state["producer"].send_all(topic, messages, 5.0)
        return Response(orjson.dumps({"accepted": count}), media_type="application/json")

    async def produce1(request: Request) -> Response:
        return await produce(request, 1)

    async def produce50(request: Request) -> Response:
        return await produce(request, 50)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state["producer"] = AsyncProducer(os.environ["KAFKA_BOOTSTRAP_SERVERS"])
        yield
        state["producer"].close()

    async def healthz(_request: Request) -> Response:
        return Response(b"ok")

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/bare", bare, methods=["POST"]),
            Route("/produce1", produce1, methods=["POST"]),
            Route("/produce50", produce50, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
