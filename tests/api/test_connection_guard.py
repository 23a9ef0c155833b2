"""The connection guard on a real uvicorn server: a slow answer is never cut by the header
timeout, a connection that sends nothing is closed by it, and the cap makes room."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn

from model_boss.api._connection_guard import ConnectionLimits, uvicorn_options
from model_boss.testing import free_port


async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await asyncio.sleep(1.0 if scope["path"] == "/slow" else 0)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def serving(limits: ConnectionLimits) -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(
        slow_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
        **uvicorn_options(limits),
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def test_a_slow_answer_outlives_the_header_timeout_and_silence_does_not() -> None:
    async with serving(ConnectionLimits(header_timeout_s=0.3)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/slow")).text == "ok"  # 1 s, over the 0.3 s timeout
            assert (await http.get("/")).text == "ok"  # the kept-alive connection again
        assert await asyncio.wait_for(reader.read(), 2) == b""  # the silent one: closed
        writer.close()


async def test_at_the_cap_a_new_connection_replaces_the_longest_idle() -> None:
    async with serving(ConnectionLimits(max_connections=3, header_timeout_s=30)) as port:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/")).text == "ok"
        assert await asyncio.wait_for(idle[0][0].read(), 2) == b""  # the oldest made room
        for _, writer in idle:
            writer.close()
