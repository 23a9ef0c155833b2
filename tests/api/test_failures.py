"""Failures around a request never wedge a model, and always answer in the OpenAI shape."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, make_engine, sim_model

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


async def test_a_client_leaving_before_the_first_chunk_frees_the_model() -> None:
    # Prompt processing takes 1 s; the client leaves after 0.2 s.
    slow_start = sim_model(
        "m", entry={"simulated": {"ttft_s": 1.0, "tokens_per_s": 2000, "output_tokens": 4}}
    )
    async with Server(make_engine([slow_start])) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            await http.post("/v1/chat/completions", json={"model": "m", **CHAT})  # warm
            leaving = asyncio.create_task(
                http.post("/v1/chat/completions", json={"model": "m", "stream": True, **CHAT})
            )
            await asyncio.sleep(0.2)
            leaving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leaving
            started = time.monotonic()
            r = await http.post("/v1/chat/completions", json={"model": "m", **CHAT})
            assert r.status_code == 200
            assert time.monotonic() - started < 3  # not stuck behind the abandoned request
            slots = (await http.get("/v1/pool/status")).json()["slots"]
            assert [s["inflight"] for s in slots] == [0]


async def test_streaming_from_a_model_that_cannot_chat_is_a_400_and_frees_the_slot() -> None:
    embed_only = sim_model(
        "embed", entry={"simulated": {"capabilities": ["embeddings"], "output_tokens": 2}}
    )
    async with Server(make_engine([embed_only])) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            for _ in range(3):  # the slot is free again each time
                r = await http.post(
                    "/v1/chat/completions", json={"model": "embed", "stream": True, **CHAT}
                )
                assert r.status_code == 400
                assert r.json()["error"]["code"] == "unsupported_operation"
            r = await http.post("/v1/embeddings", json={"model": "embed", "input": "x"})
            assert r.status_code == 200


async def _serve(handler: Any) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return await reader.readexactly(length)


def remote_model(port: int) -> Any:
    model = sim_model("remote")
    return type(model)(
        profile=model.profile,
        backend="openai_remote",
        entry={"openai_remote": {"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 0}},
        modalities=model.modalities,
    )


@pytest.fixture
async def upstream() -> AsyncIterator[dict[str, Any]]:
    """A local OpenAI-compatible upstream whose behaviour each test sets."""
    state: dict[str, Any] = {"mode": "ok", "tasks": []}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        state["tasks"].append(task)
        try:
            while True:
                body = json.loads(await _read_request(reader))
                if state["mode"] == "too_long":
                    payload = json.dumps(
                        {"error": {"message": "the prompt exceeds the context size"}}
                    ).encode()
                    writer.write(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
                    )
                    await writer.drain()
                    continue
                assert body["stream"] is True
                chunk = b'data: {"choices":[{"index":0,"delta":{"content":"hel"}}]}\n\n'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(chunk), chunk)
                )
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.transport.abort()  # the upstream dies mid-stream
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    server, port = await _serve(handle)
    state["port"] = port
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()
        for task in state["tasks"]:
            task.cancel()
        await asyncio.gather(*state["tasks"], return_exceptions=True)


async def test_an_upstream_4xx_is_passed_on_not_turned_into_a_retryable_5xx(
    upstream: dict[str, Any],
) -> None:
    upstream["mode"] = "too_long"
    async with Server(make_engine([remote_model(upstream["port"])])) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            body = {"model": "remote", "allow_remote": True, **CHAT}
            r = await http.post("/v1/chat/completions", json=body)
            assert r.status_code == 400
            error = r.json()["error"]
            assert error["message"] == "the prompt exceeds the context size"
            assert error["code"] == "upstream_rejected"


async def test_an_upstream_dying_mid_stream_ends_it_with_an_openai_error_event(
    upstream: dict[str, Any],
) -> None:
    async with Server(make_engine([remote_model(upstream["port"])])) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            body = {"model": "remote", "allow_remote": True, "stream": True, **CHAT}
            async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                assert r.status_code == 200
                events = [line async for line in r.aiter_lines() if line.startswith("data: ")]
            assert "hel" in events[0]
            last = json.loads(events[-1][len("data: ") :])
            assert set(last["error"]) == {"message", "type", "param", "code"}
            slots = (await http.get("/v1/pool/status")).json()["slots"]
            assert [s["inflight"] for s in slots] == [0]
