"""Measure aiohttp against httpx as the pooled upstream client of a backend.

A backend's client does three things on the hot path: small JSON POSTs one at a time,
many concurrent POSTs, and reading an SSE stream chunk by chunk. This script runs a local
aiohttp server in a child process (so that the server does not share the client's event
loop) and times each client on the same three loads.

Run: ``.venv/bin/python benchmarks/http_client.py`` (results go to stdout as a table;
docs/notes/http-client.md records one run).
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from aiohttp import web

SEQUENTIAL = 1000
CONCURRENT = 2000
CONCURRENCY = 32
STREAM_EVENTS = 5000
ROUNDS = 3

BODY = {"model": "m", "messages": [{"role": "user", "content": "x" * 800}], "max_tokens": 16}
ANSWER = json.dumps(
    {"id": "c", "object": "chat.completion", "choices": [{"message": {"content": "y" * 800}}]}
).encode()
EVENT = b'data: {"choices":[{"delta":{"content":"tok"}}]}\n\n'


async def _chat(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


async def _stream(request: web.Request) -> web.StreamResponse:
    await request.read()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for _ in range(STREAM_EVENTS):
        await response.write(EVENT)
    await response.write(b"data: [DONE]\n\n")
    return response


def serve(port: int) -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/stream", _stream)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _aiohttp_loads(base: str) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(base_url=base, connector=connector) as session:

        async def post() -> None:
            async with session.post("/v1/chat/completions", json=BODY) as response:
                await response.json()

        async def stream() -> int:
            count = 0
            async with session.post("/v1/stream", json=BODY) as response:
                async for chunk in response.content.iter_any():
                    count += chunk.count(b"\n\n")
            return count

        return await _loads(post, stream)


async def _httpx_loads(base: str) -> dict[str, float]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, limits=limits) as client:

        async def post() -> None:
            response = await client.post("/v1/chat/completions", json=BODY)
            response.json()

        async def stream() -> int:
            count = 0
            async with client.stream("POST", "/v1/stream", json=BODY) as response:
                async for chunk in response.aiter_raw():
                    count += chunk.count(b"\n\n")
            return count

        return await _loads(post, stream)


async def _loads(
    post: Callable[[], Awaitable[None]], stream: Callable[[], Awaitable[int]]
) -> dict[str, float]:
    await post()  # warm the pool
    start = time.perf_counter()
    for _ in range(SEQUENTIAL):
        await post()
    sequential_us = (time.perf_counter() - start) / SEQUENTIAL * 1e6

    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def bounded() -> None:
        async with semaphore:
            await post()

    start = time.perf_counter()
    await asyncio.gather(*(bounded() for _ in range(CONCURRENT)))
    concurrent_rps = CONCURRENT / (time.perf_counter() - start)

    start = time.perf_counter()
    events = await stream()
    stream_events_per_s = events / (time.perf_counter() - start)
    return {
        "sequential_us_per_request": sequential_us,
        "concurrent_requests_per_s": concurrent_rps,
        "stream_events_per_s": stream_events_per_s,
    }


async def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError("benchmark server did not start")


async def main() -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])  # noqa: ASYNC220
    try:
        await _wait_listening(port)
        base = f"http://127.0.0.1:{port}"
        results: dict[str, list[dict[str, float]]] = {"aiohttp": [], "httpx": []}
        for _ in range(ROUNDS):
            results["aiohttp"].append(await _aiohttp_loads(base))
            results["httpx"].append(await _httpx_loads(base))
    finally:
        server.terminate()
        server.wait()
    print(f"aiohttp {aiohttp.__version__}, httpx {httpx.__version__}, median of {ROUNDS} rounds")
    print(f"{'metric':<28}{'aiohttp':>12}{'httpx':>12}")
    for metric in results["aiohttp"][0]:
        row = [statistics.median(r[metric] for r in results[lib]) for lib in ("aiohttp", "httpx")]
        print(f"{metric:<28}{row[0]:>12.0f}{row[1]:>12.0f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    else:
        asyncio.run(main())
