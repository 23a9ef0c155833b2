"""Many OS processes share one ledger (SQLite file, real Valkey server)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_boss import Device, GPUBoss
from model_boss.leases import open_store
from tests.leases.conftest import ledger_url
from tests.leases.ledger_worker import CAPACITY_MB

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.leases.ledger_worker", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture(params=["sqlite", "valkey"])
def mp_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return ledger_url(request.param, tmp_path, request)


@pytest.fixture
def reaper() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.communicate(timeout=10)


async def read_line(proc: subprocess.Popen[str], within_s: float) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), within_s)
    return line.strip()


async def test_eight_processes_never_overcommit(
    mp_url: str, reaper: list[subprocess.Popen[str]]
) -> None:
    store = open_store(mp_url)
    await store.connect()
    await store.register_pool("mp:gpu0", CAPACITY_MB)
    reaper.extend(spawn("churn", mp_url, "4", str(seed)) for seed in range(8))
    samples = max_used = 0
    try:
        while any(p.poll() is None for p in reaper):
            for pool in await store.pools():
                live = sum(lease.mb for lease in pool.leases)
                assert pool.used_mb <= pool.capacity_mb, pool
                assert live <= pool.capacity_mb, pool
                tokens = [lease.token for lease in pool.leases]
                assert len(tokens) == len(set(tokens))
                max_used = max(max_used, live)
            samples += 1
            await asyncio.sleep(0.005)
    finally:
        await store.close()
    grants = 0
    for proc in reaper:
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        grants += int(out.split()[0].split("=")[1])
    assert samples >= 50
    assert grants >= 100
    assert max_used > CAPACITY_MB // 2  # the processes really competed for memory


async def test_sigkilled_holder_memory_returns_within_ttl_plus_one_second(
    mp_url: str, reaper: list[subprocess.Popen[str]]
) -> None:
    ttl = 1.0
    holder = spawn("hold", mp_url, "8000", str(ttl))
    reaper.append(holder)
    _, lease_id, _ = (await read_line(holder, 20)).split()
    store = open_store(mp_url)
    await store.connect()
    try:
        os.kill(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        while True:
            pools = await store.pools()
            if lease_id not in {x.id for p in pools for x in p.leases}:
                break
            assert time.monotonic() - killed <= ttl + 1.0, "memory not back within TTL + 1 s"
            await asyncio.sleep(0.02)
        assert time.monotonic() - killed <= ttl + 1.0
        assert pools[0].used_mb == 0
    finally:
        await store.close()


async def test_sigstopped_holder_finds_itself_fenced_when_it_resumes(
    mp_url: str, reaper: list[subprocess.Popen[str]]
) -> None:
    ttl = 1.0
    holder = spawn("hold", mp_url, str(CAPACITY_MB), str(ttl))
    reaper.append(holder)
    _, old_id, old_token = (await read_line(holder, 20)).split()
    os.kill(holder.pid, signal.SIGSTOP)
    async with GPUBoss(mp_url, [Device(0, CAPACITY_MB)], host="mp", ttl_s=5) as boss:
        # The whole GPU was held; it becomes grantable once the stopped holder's TTL passes.
        lease = await boss.acquire(vram_mb=CAPACITY_MB, timeout=ttl + 2)
        assert lease.token > int(old_token)
        os.kill(holder.pid, signal.SIGCONT)
        assert await read_line(holder, 5) == "fenced"
        leases = (await boss.status()).pools[0].leases
        assert [x.id for x in leases] == [lease.id]
        assert old_id != lease.id
        await lease.release()


async def test_a_killed_holders_memory_is_granted_at_once(
    mp_url: str, reaper: list[subprocess.Popen[str]]
) -> None:
    """kill -9 of a holder on this host: its memory is granted by the next acquire,
    not after its TTL."""
    proc = spawn("hold", mp_url, str(CAPACITY_MB), "30")
    reaper.append(proc)
    assert (await read_line(proc, 30)).startswith("held")
    proc.kill()
    proc.wait()
    async with GPUBoss(mp_url, [Device(0, CAPACITY_MB)], host="mp", ttl_s=30) as boss:
        started = time.monotonic()
        async with boss.acquire(vram_mb=CAPACITY_MB, timeout=2) as lease:
            assert lease.valid
        assert time.monotonic() - started < 1.0
