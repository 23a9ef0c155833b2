"""A lean RESP2 client for the Redis ledger: one pipelined connection per store.

Why not redis-py: a ledger round trip is two tiny Lua calls, and on these machines
redis-py spends ~90 µs of Python per call (connection pool, observability hooks,
``wait_for`` timeouts) against ~30 µs for the call itself. Here every caller writes
its command and waits on a future; replies come back in order (RESP guarantees it), so
any number of coroutines share one connection without a lock, and one watchdog timer
per connection bounds how long the oldest command may wait.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["RespConnection", "RespError", "RespTarget"]

Reply = bytes | int | list["Reply"] | None


class RespError(Exception):
    """An error reply from the server (``-ERR ...``)."""


class _Incomplete(Exception):
    pass


@dataclass(frozen=True, slots=True)
class RespTarget:
    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # unix socket
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> RespTarget:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "unix":
            return cls(
                path=parts.path, password=_unq(parts.password), username=_unq(parts.username)
            )
        db_text = parts.path.lstrip("/") or "0"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(db_text),
            username=_unq(parts.username),
            password=_unq(parts.password),
            tls=scheme == "rediss",
        )


def _unq(value: str | None) -> str | None:
    return None if value is None else unquote(value)


def encode(args: tuple[object, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def parse(buf: bytes | bytearray, pos: int) -> tuple[Reply | RespError, int]:
    """One reply from ``buf`` at ``pos``; raises _Incomplete if more bytes are needed."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos : pos + 1], bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind == b"+":
        return line, pos
    if kind == b"-":
        return RespError(line.decode(errors="replace")), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise _Incomplete
        return bytes(buf[pos : pos + n]), pos + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, pos
        items: list[Reply] = []
        for _ in range(n):
            item, pos = parse(buf, pos)
            if isinstance(item, RespError):
                item = None
            items.append(item)
        return items, pos
    raise RespError(f"protocol error: unexpected reply type {kind!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: RespConnection) -> None:
        self.owner = owner
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        pos = 0
        pending = self.owner.pending
        try:
            while pos < len(self.buf):
                reply, pos = parse(self.buf, pos)
                if pending:
                    future, _ = pending.popleft()
                    if not future.done():
                        if isinstance(reply, RespError):
                            future.set_exception(reply)
                        else:
                            future.set_result(reply)
        except _Incomplete:
            pass
        del self.buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.lost(exc or ConnectionResetError("connection closed by the server"))


class RespConnection:
    """One connection; ``call()`` is safe from any number of concurrent coroutines."""

    def __init__(self, target: RespTarget, *, timeout_s: float, connect_timeout_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.pending: collections.deque[tuple[asyncio.Future[Reply], float]] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._transport is not None and not self._transport.is_closing():
                return
            loop = asyncio.get_running_loop()
            t = self.target
            async with asyncio.timeout(self.connect_timeout_s):
                if t.path is not None:
                    transport, _ = await loop.create_unix_connection(
                        lambda: _Protocol(self), t.path
                    )
                else:
                    context = ssl.create_default_context() if t.tls else None
                    transport, _ = await loop.create_connection(
                        lambda: _Protocol(self), t.host, t.port, ssl=context
                    )
            assert isinstance(transport, asyncio.Transport)
            self._transport = transport
            if t.password is not None:
                auth = ("AUTH", t.username, t.password) if t.username else ("AUTH", t.password)
                await self._send(auth)
            if t.db:
                await self._send(("SELECT", t.db))

    async def call(self, *args: object) -> Reply:
        if self._transport is None or self._transport.is_closing():
            await self._connect()
        return await self._send(args)

    def _send(self, args: tuple[object, ...]) -> asyncio.Future[Reply]:
        assert self._transport is not None
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.pending.append((future, time.monotonic()))
        self._transport.write(encode(args))
        if self._watchdog is None:
            self._arm()
        return future

    def _arm(self) -> None:
        self._watchdog = asyncio.get_running_loop().call_later(
            min(0.25, self.timeout_s / 4), self._check
        )

    def _check(self) -> None:
        self._watchdog = None
        if not self.pending:
            return
        _, started = self.pending[0]
        if time.monotonic() - started > self.timeout_s:
            self.lost(TimeoutError(f"no reply within {self.timeout_s:g} s"))
            if self._transport is not None:
                self._transport.abort()
            return
        self._arm()

    def lost(self, exc: BaseException) -> None:
        self._transport = None
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_exception(
                    ConnectionError(str(exc)) if not isinstance(exc, TimeoutError) else exc
                )

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        self.lost(ConnectionResetError("closed"))
