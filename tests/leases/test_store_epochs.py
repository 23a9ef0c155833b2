"""A store that lost its state grants nothing until every lease someone may still believe
held has had its chance to renew and fail; tokens never go back; bosses carry on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from pathlib import Path

import pytest

from model_boss import AcquireTimeout, Device, GPUBoss
from model_boss.leases import Lease
from model_boss.leases._recovery import RECOVERY_S, token_floor
from tests.faults.servers import Valkey

GPU = [Device(0, 10_000)]
pytestmark = pytest.mark.slow


async def _lost_within(lease: Lease, seconds: float) -> float:
    await asyncio.wait_for(lease.lost.wait(), seconds)
    return time.monotonic()


async def _take(boss: GPUBoss, mb: int, wait_s: float) -> Lease:
    return await boss.acquire(vram_mb=mb, timeout=wait_s)


async def test_an_empty_restart_fences_old_holders_before_anyone_is_granted() -> None:
    with Valkey() as server:
        await asyncio.sleep(RECOVERY_S)  # a settled server: the first grants come at once
        async with GPUBoss(server.url, GPU, host="h", holder="a", ttl_s=30) as a:
            old = await a.acquire(vram_mb=10_000, timeout=2)
            server.restart()
            restarted = time.monotonic()
            async with GPUBoss(server.url, GPU, host="h", holder="b", ttl_s=30) as b:
                take = asyncio.create_task(_take(b, 10_000, 15))
                lost_at = await _lost_within(old, 4)  # learnt at its next renewal
                new = await take
                granted_at = time.monotonic()
                assert lost_at < granted_at
                assert granted_at - restarted > RECOVERY_S - 1.5
                assert new.token > old.token
                assert new.token >= token_floor(time.time())
                await new.release()
            # the boss that was running all along takes leases again without a restart
            again = await a.acquire(vram_mb=5000, timeout=5)
            assert again.token > new.token
            await again.release()


async def test_a_restart_that_kept_its_data_keeps_the_leases_and_counts_on() -> None:
    with Valkey(aof=True) as server:
        await asyncio.sleep(RECOVERY_S)
        async with GPUBoss(server.url, GPU, host="h", holder="a", ttl_s=30) as a:
            held = await a.acquire(vram_mb=6000, timeout=2)
            await asyncio.sleep(1.2)  # appendfsync everysec
            server.restart()
            await asyncio.sleep(3)  # past a renewal
            assert held.valid
            status = (await a.status()).pools[0]
            assert [x.id for x in status.leases] == [held.id]
            new = await a.acquire(vram_mb=4000, timeout=15)
            assert new.token > held.token
            await new.release()
            await held.release()


def _ledger(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def _break(path: Path, how: str) -> None:
    for suffix in ("-wal", "-shm"):  # SQLite would mix a stale WAL into any new file
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    if how == "deleted":
        path.unlink()
    elif how == "replaced":
        other = path.with_name("other.db")
        with contextlib.closing(sqlite3.connect(other)) as db:
            db.execute("CREATE TABLE unrelated (x)")
            db.commit()
        os.replace(other, path)
    else:
        with open(path, "r+b") as f:
            f.truncate(0)


@pytest.mark.parametrize("how", ["deleted", "replaced", "truncated"])
async def test_a_sqlite_ledger_lost_under_its_holders_is_noticed(tmp_path: Path, how: str) -> None:
    url = _ledger(tmp_path)
    async with GPUBoss(url, GPU, host="h", ttl_s=30) as a:
        old = await a.acquire(vram_mb=10_000, timeout=2)
        _break(tmp_path / "ledger.db", how)
        async with GPUBoss(url, GPU, host="h", holder="b", ttl_s=30) as b:
            try:
                new = await b.acquire(vram_mb=10_000, timeout=12)
            except AcquireTimeout:
                # A truncated file may come back whole: the old holder's connection
                # checkpoints its WAL into it. Then the old lease is still there, and kept.
                assert how == "truncated"
                assert old.valid
                return
            granted_at = time.monotonic()
            assert old.lost.is_set()  # before anyone was granted its memory
            assert new.token > old.token
            await new.release()
        assert granted_at > 0


async def test_a_fresh_sqlite_ledger_with_nobody_else_grants_at_once(tmp_path: Path) -> None:
    async with GPUBoss(_ledger(tmp_path), GPU, host="h") as boss:
        started = time.monotonic()
        async with boss.acquire(vram_mb=10, timeout=1) as lease:
            assert lease.token >= token_floor(time.time() - 5)
        assert time.monotonic() - started < 0.5
