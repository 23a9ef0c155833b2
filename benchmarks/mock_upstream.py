"""A fast mock OpenAI-compatible upstream for the gateway benchmark.

A raw asyncio HTTP/1.1 server (uvloop when installed) so that the upstream costs as little
CPU as possible and the benchmark measures the coordinator, not the mock:

- ``POST /v1/chat/completions``: a fixed ``chat.completion`` JSON answer, or with
  ``"stream": true`` an SSE stream (chunked) of a role chunk, ``CHUNKS`` content chunks, a
  usage chunk and ``data: [DONE]``. The first event goes out with the headers, the rest one
  event per event-loop turn.
- ``GET /v1/models``: one model.

Keep-alive unless the request says ``Connection: close``. No pipelining, no
``Expect: 100-continue``: neither aiohttp nor the coordinator send them.

Run: ``.venv/bin/python benchmarks/mock_upstream.py --port 9000`` (prints ``ready <port>``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from typing import cast

__all__ = ["CHUNKS", "MODEL", "serve"]

MODEL = "mock-upstream"
CHUNKS = 4

_ANSWER = json.dumps(
    {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the mock upstream."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    },
    separators=(",", ":"),
).encode()
_MODELS = json.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "mock"}]},
    separators=(",", ":"),
).encode()


def _event(delta: dict[str, str], finish: str | None = None, usage: bool = False) -> bytes:
    chunk: dict[str, object] = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        chunk["usage"] = {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 16}
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


_EVENTS = [
    _event({"role": "assistant", "content": ""}),
    *(_event({"content": f"tok{i} "}) for i in range(CHUNKS)),
    _event({}, finish="stop", usage=True),
    b"data: [DONE]\n\n",
]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _response(status: str, content_type: bytes, body: bytes, close: bool) -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: " + content_type
        + b"\r\nContent-Length: " + str(len(body)).encode()
        + (b"\r\nConnection: close" if close else b"")
        + b"\r\n\r\n" + body
    )  # fmt: skip


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while not self._busy:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].decode("latin-1")
            lines = head.split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self._buffer) < end + 4 + length:
                return
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            close = headers.get("connection", "").lower() == "close"
            self._handle(method, path, body, close)

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def _handle(self, method: str, path: str, body: bytes, close: bool) -> None:
        if method == "POST" and path == "/v1/chat/completions":
            try:
                stream = json.loads(body).get("stream") is True
            except (ValueError, AttributeError):
                self._finish(_response("400 Bad Request", b"text/plain", b"bad json", close), close)
                return
            if stream:
                self._stream(close)
            else:
                self._finish(_response("200 OK", b"application/json", _ANSWER, close), close)
        elif method == "GET" and path == "/v1/models":
            self._finish(_response("200 OK", b"application/json", _MODELS, close), close)
        else:
            self._finish(_response("404 Not Found", b"text/plain", b"not found", close), close)

    def _finish(self, data: bytes, close: bool) -> None:
        self._write(data)
        if close and self._transport is not None:
            self._transport.close()

    def _stream(self, close: bool) -> None:
        self._busy = True
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n" + (b"Connection: close\r\n" if close else b"")
            + b"\r\n"
        )  # fmt: skip
        self._write(head + _chunk(_EVENTS[0]))
        loop = asyncio.get_running_loop()

        def step(i: int) -> None:
            if i < len(_EVENTS):
                self._write(_chunk(_EVENTS[i]))
                loop.call_soon(step, i + 1)
                return
            self._busy = False
            self._finish(b"0\r\n\r\n", close)
            if self._buffer and not close:
                self.data_received(b"")

        loop.call_soon(step, 1)


async def serve(host: str, port: int, ready: Callable[[int], None] | None = None) -> None:
    """Serve until cancelled (or SIGTERM/SIGINT when run as a script)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Connection, host, port, backlog=1024)
    bound = int(server.sockets[0].getsockname()[1])
    if ready is not None:
        ready(bound)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)

    def ready(port: int) -> None:
        print(f"ready {port}", flush=True)

    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, ready))
    else:
        uvloop.run(serve(args.host, args.port, ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
