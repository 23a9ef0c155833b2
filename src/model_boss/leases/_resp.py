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
    """One TCP (or unix) connection. It owns the replies it is waiting for, so a late
    reply on an abandoned connection can never reach a caller of its successor."""

    def __init__(self, owner: RespConnection) -> None:
        self.owner = owner
        self.buf = bytearray()
        self.pending: collections.deque[tuple[asyncio.Future[Reply], float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, args: tuple[object, ...]) -> asyncio.Future[Reply]:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        if self.closed or self.transport is None:
            future.set_exception(ConnectionResetError("the connection is closed"))
            return future
        self.pending.append((future, time.monotonic()))
        self.transport.write(encode(args))
        return future

    def data_received(self, data: bytes) -> None:
        self.buf += data
        pos = 0
        try:
            while pos < len(self.buf):
                reply, pos = parse(self.buf, pos)
                if not self.pending:
                    continue  # a reply nobody waits for: cannot happen on a sane server
                future, _ = self.pending.popleft()
                if not future.done():
                    if isinstance(reply, RespError):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        except _Incomplete:
            pass
        del self.buf[:pos]

    def fail(self, exc: BaseException) -> None:
        """Fail everything pending and drop the connection (idempotent)."""
        self.closed = True
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionResetError(str(exc) if exc else "connection closed by the server"))
        self.owner.forget(self)


class RespConnection:
    """One connection at a time; ``call()`` is safe from any number of concurrent
    coroutines. A broken or timed-out connection is dropped with everything pending on
    it, and the next call opens a new one (after AUTH and SELECT, before anyone else's
    command can be written to it)."""

    def __init__(self, target: RespTarget, *, timeout_s: float, connect_timeout_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._proto is not None and not self._proto.closed:
                return self._proto
            loop = asyncio.get_running_loop()
            t = self.target
            proto = _Protocol(self)
            async with asyncio.timeout(self.connect_timeout_s):
                if t.path is not None:
                    await loop.create_unix_connection(lambda: proto, t.path)
                else:
                    context = ssl.create_default_context() if t.tls else None
                    await loop.create_connection(lambda: proto, t.host, t.port, ssl=context)
            handshake = []
            if t.password is not None:
                auth = ("AUTH", t.username, t.password) if t.username else ("AUTH", t.password)
                handshake.append(proto.send(auth))
            if t.db:
                handshake.append(proto.send(("SELECT", t.db)))
            try:
                async with asyncio.timeout(self.timeout_s):
                    for step in handshake:
                        await step
            except BaseException as exc:
                proto.fail(exc if isinstance(exc, Exception) else ConnectionResetError("cancelled"))
                raise
            self._proto = proto
            return proto

    async def call(self, *args: object) -> Reply:
        proto = self._proto
        if proto is None or proto.closed:
            proto = await self._connect()
        future = proto.send(args)
        if self._watchdog is None:
            self._arm()
        return await future

    def forget(self, proto: _Protocol) -> None:
        if self._proto is proto:
            self._proto = None

    def _arm(self) -> None:
        self._watchdog = asyncio.get_running_loop().call_later(
            min(0.25, self.timeout_s / 4), self._check
        )

    def _check(self) -> None:
        self._watchdog = None
        proto = self._proto
        if proto is None or not proto.pending:
            return
        _, started = proto.pending[0]
        if time.monotonic() - started > self.timeout_s:
            self.forget(proto)
            proto.fail(TimeoutError(f"no reply within {self.timeout_s:g} s"))
            return
        self._arm()

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        proto, self._proto = self._proto, None
        if proto is not None:
            proto.fail(ConnectionResetError("closed"))
