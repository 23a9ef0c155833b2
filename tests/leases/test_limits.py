"""Every malformed request is InvalidLeaseRequest; ``timeout`` is a deadline for the
whole call, a hung store included, and a brief outage is retried within it."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import pytest

from model_boss import Device, GPUBoss
from model_boss.errors import InvalidLeaseRequest, StoreUnavailable
from model_boss.leases import RAMBoss, open_store
from model_boss.testing import ValkeyServer
from tests.faults.servers import TcpProxy, Valkey

GPU = [Device(0, 10_000)]


def boss() -> GPUBoss:
    return GPUBoss("memory://limits", GPU, host="h")


@pytest.mark.parametrize(
    "ttl", [float("inf"), float("nan"), 1e-6, 0.0, -1.0, 1e12, "30", True, 10**400]
)
def test_a_ttl_that_is_not_a_finite_number_in_range_is_refused(ttl: object) -> None:
    with pytest.raises(InvalidLeaseRequest, match="ttl_s"):
        boss().acquire(vram_mb=10, ttl_s=ttl)  # type: ignore[arg-type]
    with pytest.raises(InvalidLeaseRequest, match="ttl_s"):
        GPUBoss("memory://limits", GPU, ttl_s=ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1, "1", [], True])
def test_a_timeout_that_is_not_a_finite_number_is_refused(timeout: object) -> None:
    with pytest.raises(InvalidLeaseRequest, match="timeout"):
        boss().acquire(vram_mb=10, timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("priority", [10**30, 1001, 2.5, float("nan"), b"high", [1]])
def test_a_priority_out_of_range_or_of_a_wrong_type_is_refused(priority: object) -> None:
    with pytest.raises(InvalidLeaseRequest, match="priority"):
        boss().acquire(vram_mb=10, priority=priority)  # type: ignore[arg-type]


@pytest.mark.parametrize("model_id", [5, b"m", ["m"], "x" * 10_000])
def test_a_model_id_that_is_not_a_short_string_is_refused(model_id: object) -> None:
    with pytest.raises(InvalidLeaseRequest, match="model_id"):
        boss().acquire(vram_mb=10, model_id=model_id)  # type: ignore[arg-type]


def test_a_huge_size_is_refused_not_overflowed() -> None:
    with pytest.raises(InvalidLeaseRequest, match="vram_mb"):
        boss().acquire(vram_mb=10**30)
    with pytest.raises(InvalidLeaseRequest, match="total_mb"):
        RAMBoss("memory://limits", total_mb=10**30)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/x",
        "redis://127.0.0.1:6379/-1",
        "redis://127.0.0.1:99999/0",
        "redis://127.0.0.1:port/0",
        "redis://127.0.0.1:6379/0?colour=blue",
        "redis://127.0.0.1:6379/0?timeout=nan",
        "redis://a:1,b:2/0",
        "redis://127.0.0.1/0?ssl_ca_certs=/ca.pem",
        "redis+sentinel://127.0.0.1:26379",
        "rediss://127.0.0.1/0?ssl_check_hostname=maybe",
    ],
)
def test_a_bad_redis_url_is_refused_naming_what_is_wrong(url: str) -> None:
    with pytest.raises(InvalidLeaseRequest, match="bad Redis ledger URL"):
        open_store(url)


def test_sentinel_and_tls_urls_are_understood() -> None:
    from model_boss.leases._redis_url import parse_redis_url

    u = parse_redis_url(
        "redis+sentinel://:pw@h1:26379,h2/ledger/2?sentinel_password=s&prefix=x:&timeout=2"
    )
    assert u.hosts == (("h1", 26379), ("h2", 26379))
    assert (u.service, u.db, u.password, u.sentinel_password, u.prefix, u.timeout_s) == (
        "ledger",
        2,
        "pw",
        "s",
        "x:",
        2.0,
    )
    t = parse_redis_url("rediss://cache:6380/0?ssl_check_hostname=false")
    assert (t.tls, t.check_hostname) == (True, False)


async def test_acquire_against_a_hung_store_returns_at_its_deadline() -> None:
    """SIGSTOPped Valkey: the TCP connection opens (the kernel accepts it) and no
    command is ever answered. timeout=1 must still mean about one second."""
    with Valkey() as server:
        async with GPUBoss(server.url + "?prefix=hung:", GPU, host="h") as b:
            server.pause()
            try:
                for _ in range(2):  # once on the open connection, once connecting afresh
                    started = time.monotonic()
                    with pytest.raises(StoreUnavailable, match="within 1 s"):
                        await b.acquire(vram_mb=10, timeout=1)
                    assert time.monotonic() - started < 1.3
            finally:
                server.resume()


async def test_a_brief_outage_is_retried_within_the_deadline(valkey_url: str) -> None:
    port = urlsplit(valkey_url).port
    assert port is not None
    proxy = TcpProxy(port).start()
    try:
        url = f"redis://127.0.0.1:{proxy.port}/0?prefix=outage:"
        async with GPUBoss(url, GPU, host="h") as b:
            proxy.drop()
            asyncio.get_running_loop().call_later(0.7, proxy.heal)
            started = time.monotonic()
            async with b.acquire(vram_mb=10, timeout=5) as lease:
                assert lease.valid
            assert 0.6 < time.monotonic() - started < 3
    finally:
        proxy.stop()


async def test_a_store_that_stays_down_fails_at_the_deadline_with_store_unavailable() -> None:
    server = ValkeyServer()
    url = server.start()
    b = GPUBoss(url + "?prefix=down:", GPU, host="h")
    await b.connect()
    server.stop()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await b.acquire(vram_mb=10, timeout=0.8)
    assert 0.7 < time.monotonic() - started < 1.2
    await b.close()
