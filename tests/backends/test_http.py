"""The upstream client: SSE framing, no buffering, and closing a stream closes the connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from model_boss.backends import AnswerTooLarge, UpstreamClient, UpstreamError, free_port
from model_boss.backends._http import split_sse_events


def test_split_sse_events_keeps_raw_bytes_and_the_partial_rest() -> None:
    events, rest = split_sse_events(b"data: 1\n\ndata: 2\r\n\r\n: comment\n\ndata: 3")
    assert events == [b"data: 1\n\n", b"data: 2\r\n\r\n", b": comment\n\n"]
    assert rest == b"data: 3"
    assert split_sse_events(b"data: x\n") == ([], b"data: x\n")


class StreamServer:
    """Writes one event, then waits for the test to ask for the next one."""

    def __init__(self) -> None:
        self.next_event = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.written = 0


@pytest.fixture
async def stream_server() -> AsyncIterator[tuple[str, StreamServer]]:
    server = StreamServer()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(f"data: {server.written}\n\n".encode())
                server.written += 1
                await server.next_event.wait()
                server.next_event.clear()
        except (ConnectionResetError, asyncio.CancelledError):
            server.disconnected.set()
            raise

    async def bad(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "context too long"}}, status=400)

    app = web.Application()
    app.router.add_post("/stream", handler)
    app.router.add_post("/bad", bad)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", server
    await runner.cleanup()


async def test_each_event_is_yielded_before_the_next_is_written(
    stream_server: tuple[str, StreamServer],
) -> None:
    """A client that buffered would wait for more data and this test would hang."""
    url, server = stream_server
    client = UpstreamClient(url)
    stream = client.stream("/stream", {})
    try:
        for expected in range(5):
            event = await asyncio.wait_for(anext(stream), timeout=5)
            assert event == f"data: {expected}\n\n".encode()
            server.next_event.set()
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
        await client.aclose()


async def test_closing_the_stream_closes_the_upstream_connection(
    stream_server: tuple[str, StreamServer],
) -> None:
    url, server = stream_server
    client = UpstreamClient(url)
    stream = client.stream("/stream", {})
    assert await anext(stream) == b"data: 0\n\n"
    await stream.aclose()  # type: ignore[attr-defined]
    server.next_event.set()  # the server tries to write again and finds the peer gone
    await asyncio.wait_for(server.disconnected.wait(), timeout=5)
    await client.aclose()


async def test_cancelling_the_reader_closes_the_upstream_connection(
    stream_server: tuple[str, StreamServer],
) -> None:
    url, server = stream_server
    client = UpstreamClient(url)
    first = asyncio.Event()

    async def read() -> None:
        async for _ in client.stream("/stream", {}):
            first.set()

    reader = asyncio.create_task(read())
    await asyncio.wait_for(first.wait(), timeout=5)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    server.next_event.set()
    await asyncio.wait_for(server.disconnected.wait(), timeout=5)
    await client.aclose()


async def test_an_error_status_before_the_stream_is_an_upstream_error(
    stream_server: tuple[str, StreamServer],
) -> None:
    url, _ = stream_server
    client = UpstreamClient(url)
    try:
        with pytest.raises(UpstreamError) as caught:
            await anext(client.stream("/bad", {}))
        assert caught.value.status == 400
        assert "context too long" in caught.value.body
        assert "answered 400" in str(caught.value)
    finally:
        await client.aclose()


@pytest.fixture
async def big_server() -> AsyncIterator[str]:
    """Answers of 1 MiB: with a Content-Length, chunked without one, one endless SSE event."""
    big = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=big, content_type="application/json")

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(big), 4096):
            await response.write(big[start : start + 4096])
        return response

    async def event(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: " + big)  # never ends the event
        return response

    app = web.Application()
    app.router.add_post("/sized", sized)
    app.router.add_post("/chunked", chunked)
    app.router.add_post("/event", event)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_answers_over_the_limit_are_not_read_whole(big_server: str) -> None:
    client = UpstreamClient(big_server, max_answer=64 * 1024)
    try:
        for path in ("/sized", "/chunked"):
            with pytest.raises(AnswerTooLarge, match="larger than 65536 bytes"):
                await client.post_json(path, {})
        with pytest.raises(AnswerTooLarge, match="event"):
            async for _ in client.stream("/event", {}):
                pass
        roomy = UpstreamClient(big_server, max_answer=2 * 1024 * 1024)
        assert len((await roomy.post_json("/chunked", {}))["pad"]) == 1024 * 1024
        await roomy.aclose()
    finally:
        await client.aclose()
