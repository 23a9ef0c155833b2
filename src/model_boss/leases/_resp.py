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
from dataclasses import dataclass, field

from model_boss.leases._redis_url import RedisURL, parse_redis_url

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
    ssl: ssl.SSLContext | None = field(default=None, compare=False)
    #: Sentinel: ask these for the master of ``service`` at every (re)connect.
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> RespTarget:
        return cls.from_parsed(parse_redis_url(url))

    @classmethod
    def from_parsed(cls, u: RedisURL) -> RespTarget:
        host, port = u.hosts[0] if u.hosts and u.service is None else ("127.0.0.1", 6379)
        return cls(
            host=host,
            port=port,
            path=u.path,
            db=u.db,
            username=u.username,
            password=u.password,
            tls=u.tls,
            ssl=u.ssl_context(),
            sentinels=u.hosts if u.service is not None else (),
            service=u.service,
            sentinel_username=u.sentinel_username,
            sentinel_password=u.sentinel_password,
        )


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
            t = self.target
            host, port = t.host, t.port
            if t.service is not None:
                host, port = await self._ask_sentinels()
            proto = await self._open(host, port, t.tls, t.ssl)
            handshake = []
            if t.password is not None:
                auth = ("AUTH", t.username, t.password) if t.username else ("AUTH", t.password)
                handshake.append(proto.send(auth))
            if t.db:
                handshake.append(proto.send(("SELECT", t.db)))
            if t.service is not None:  # Sentinel may be behind: check it is the master
                handshake.append(proto.send(("ROLE",)))
            try:
                async with asyncio.timeout(self.timeout_s):
                    for step in handshake:
                        reply = await step
                if t.service is not None and not (
                    isinstance(reply, list) and reply and reply[0] == b"master"
                ):
                    raise ConnectionRefusedError(f"{host}:{port} is not the master (yet)")
            except BaseException as exc:
                proto.fail(exc if isinstance(exc, Exception) else ConnectionResetError("cancelled"))
                raise
            self._proto = proto
            return proto

    async def _open(
        self, host: str, port: int, tls: bool, context: ssl.SSLContext | None
    ) -> _Protocol:
        loop = asyncio.get_running_loop()
        proto = _Protocol(self)
        async with asyncio.timeout(self.connect_timeout_s):
            if self.target.path is not None:
                await loop.create_unix_connection(lambda: proto, self.target.path)
            else:
                if tls and context is None:
                    context = ssl.create_default_context()
                await loop.create_connection(
                    lambda: proto, host, port, ssl=context if tls else None
                )
        return proto

    async def _ask_sentinels(self) -> tuple[str, int]:
        """The master's address, from the first sentinel that knows it."""
        t = self.target
        errors: list[str] = []
        for host, port in t.sentinels:
            proto = await self._open_sentinel(host, port, errors)
            if proto is None:
                continue
            try:
                steps = []
                if t.sentinel_password is not None:
                    auth = (t.sentinel_username, t.sentinel_password)
                    steps.append(proto.send(("AUTH", *[a for a in auth if a is not None])))
                steps.append(proto.send(("SENTINEL", "GET-MASTER-ADDR-BY-NAME", t.service)))
                async with asyncio.timeout(self.timeout_s):
                    for step in steps:
                        reply = await step
                if isinstance(reply, list) and len(reply) == 2:
                    addr, master_port = reply
                    if isinstance(addr, bytes) and isinstance(master_port, bytes):
                        return addr.decode(), int(master_port)
                errors.append(f"{host}:{port} does not know {t.service!r}")
            except (OSError, TimeoutError, RespError) as exc:
                errors.append(f"{host}:{port}: {exc}")
            finally:
                proto.fail(ConnectionResetError("done"))
        raise ConnectionRefusedError(f"no sentinel gave the master: {'; '.join(errors)}")

    async def _open_sentinel(self, host: str, port: int, errors: list[str]) -> _Protocol | None:
        try:
            return await self._open(host, port, False, None)
        except (OSError, TimeoutError) as exc:
            errors.append(f"{host}:{port}: {exc}")
            return None

    def reset(self) -> None:
        """Drop the connection (the next call opens a new one): after READONLY or
        LOADING the server we reached is not the master we want."""
        proto, self._proto = self._proto, None
        if proto is not None:
            proto.fail(ConnectionResetError("dropped"))

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
