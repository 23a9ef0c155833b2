"""The lean RESP client: parsing, pipelining, auth, database selection, failures."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from model_boss.errors import StoreUnavailable
from model_boss.leases._redis import RedisStore
from model_boss.leases._resp import (
    RespConnection,
    RespError,
    RespTarget,
    _Incomplete,
    encode,
    parse,
)
from model_boss.testing import ValkeyServer


def test_encode_is_a_resp_array_of_bulk_strings() -> None:
    assert encode(("SET", "k", 12)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        (b"+OK\r\n", b"OK"),
        (b":42\r\n", 42),
        (b"$5\r\nhello\r\n", b"hello"),
        (b"$-1\r\n", None),
        (b"*2\r\n$1\r\na\r\n*1\r\n:7\r\n", [b"a", [7]]),
        (b"*-1\r\n", None),
    ],
)
def test_parse_reads_each_reply_type(wire: bytes, value: object) -> None:
    assert parse(wire, 0) == (value, len(wire))


def test_parse_returns_server_errors_as_values() -> None:
    reply, _ = parse(b"-NOSCRIPT No matching script\r\n", 0)
    assert isinstance(reply, RespError)
    assert "NOSCRIPT" in str(reply)


@pytest.mark.parametrize("cut", range(1, 18))
def test_parse_waits_for_a_whole_reply(cut: int) -> None:
    wire = b"*2\r\n$5\r\nhello\r\n:1\r\n"
    with pytest.raises(_Incomplete):
        parse(wire[:cut], 0)


def test_urls_give_host_port_db_and_credentials() -> None:
    t = RespTarget.from_url("rediss://user:p%40ss@cache.example:6380/3")
    assert (t.host, t.port, t.db, t.username, t.password, t.tls) == (
        "cache.example",
        6380,
        3,
        "user",
        "p@ss",
        True,
    )
    assert RespTarget.from_url("unix:///run/redis.sock").path == "/run/redis.sock"


async def test_concurrent_callers_share_one_connection(valkey_url: str) -> None:
    conn = RespConnection(RespTarget.from_url(valkey_url), timeout_s=5, connect_timeout_s=2)
    try:
        replies = await asyncio.gather(*(conn.call("ECHO", f"m{i}") for i in range(200)))
        assert replies == [f"m{i}".encode() for i in range(200)]
        with pytest.raises(RespError):
            await conn.call("NO-SUCH-COMMAND")
        assert await conn.call("PING") == b"PONG"  # still in step after an error
    finally:
        await conn.close()


async def test_password_and_database_from_the_url() -> None:
    with ValkeyServer(password="s3cret") as url:
        store = RedisStore(url.replace("/0", "/2") + "?prefix=auth:")
        await store.connect()
        await store.register_pool("h:gpu0", 100)
        assert [p.pool for p in await store.pools()] == ["h:gpu0"]
        raw = RespConnection(RespTarget.from_url(url), timeout_s=5, connect_timeout_s=2)
        assert await raw.call("EXISTS", "auth:pool:{h:gpu0}") == 0  # it lives in db 2
        await raw.close()
        await store.close()
        bad = RedisStore(url.replace(":s3cret@", ":wrong@"))
        with pytest.raises(StoreUnavailable, match="refused"):
            await bad.connect()


async def test_scripts_are_loaded_again_after_a_script_flush(valkey_url: str) -> None:
    store = RedisStore(valkey_url + "?prefix=flush:")
    await store.connect()
    try:
        await store.register_pool("h:gpu0", 100)
        raw = RespConnection(RespTarget.from_url(valkey_url), timeout_s=5, connect_timeout_s=2)
        assert await raw.call("SCRIPT", "FLUSH") == b"OK"
        await raw.close()
        assert [p.capacity_mb for p in await store.pools()] == [100]
    finally:
        await store.close()


async def test_a_late_reply_on_a_timed_out_connection_never_reaches_a_new_caller() -> None:
    connections = 0
    handlers: list[asyncio.Task[None]] = []

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        mine = connections
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        await reader.read(1 << 16)
        if mine == 1:
            await asyncio.sleep(0.6)  # answers only after the client gave up
        writer.write(b"$11\r\nfrom-conn-%d\r\n" % mine)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await reader.read(1 << 16)  # wait until the client hangs up
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    srv = await asyncio.start_server(server, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    conn = RespConnection(RespTarget(port=port), timeout_s=0.3, connect_timeout_s=2)
    try:
        with pytest.raises(TimeoutError):
            await conn.call("GET", "a")
        assert await conn.call("GET", "b") == b"from-conn-2"
        await asyncio.sleep(0.5)  # connection 1's late reply arrives now, and is dropped
        assert connections == 2
    finally:
        await conn.close()
        srv.close()
        await srv.wait_closed()
        await asyncio.gather(*handlers)


async def test_concurrent_first_calls_all_run_in_the_selected_database() -> None:
    with ValkeyServer(password="pw") as url:
        conn = RespConnection(
            RespTarget.from_url(url.replace("/0", "/5")), timeout_s=5, connect_timeout_s=2
        )
        await asyncio.gather(*(conn.call("SET", f"k{i}", "1") for i in range(50)))
        check = RespConnection(RespTarget.from_url(url), timeout_s=5, connect_timeout_s=2)
        assert await check.call("DBSIZE") == 0  # nothing leaked into db 0
        assert await conn.call("DBSIZE") == 50
        await check.close()
        await conn.close()
