"""The coordinator beside another program's lease on a shared SQLite ledger.

As found on an H200: a construction-kit program held most of the GPU through its own lease;
the coordinator's books knew only its own slots, so a request for a third model was asked
of the ledger again and again, denied each time, while two idle models of the coordinator
held the room it needed. The engine now tells the scheduler what others hold
(``PoolOutside``), after a denial and every ``outside_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from model_boss import Device, GPUBoss
from model_boss.engine import Engine, RequestRejected, SlotLedger
from model_boss.scheduling import SchedulerConfig
from tests.engine.test_engine import model, run, states, until

GPU_MB = 10_000
KIT_MB = 8500  # leaves 1,500 MB: a (600) and b (600) idle, c (800) needs one of them gone
MODELS = [model("a", 600), model("b", 600), model("c", 800), model("d", 2000)]


@contextlib.asynccontextmanager
async def coordinator(tmp_path: Path, **kwargs: Any) -> AsyncIterator[tuple[Engine, str]]:
    """A started engine on one GPU of a fresh SQLite ledger file, and the ledger's URL.

    ``retry_after_s`` is long: a request served within seconds was not served by retrying
    after a denial."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    boss = GPUBoss(url, [Device(0, GPU_MB)], host="t")
    config = SchedulerConfig(batch_window_s=0.0, retry_after_s=60.0)
    eng = Engine(MODELS, SlotLedger(boss, None), config=config, **kwargs)
    await eng.start()
    try:
        yield eng, url
    finally:
        await eng.stop()


def kit(url: str) -> GPUBoss:
    """The other program: its own holder on the same ledger file."""
    return GPUBoss(url, [Device(0, GPU_MB)], host="t", holder="construction-kit")


def outside_mb(eng: Engine) -> int:
    return next(iter(eng.scheduler.pool.pools.values())).outside_mb


async def two_idle(eng: Engine) -> None:
    await run(eng, "a")
    await run(eng, "b")
    assert states(eng) == {"a": "ready", "b": "ready"}


async def test_a_request_denied_beside_another_program_evicts_an_idle_model(
    tmp_path: Path,
) -> None:
    # No periodic look at the ledger: the scheduler learns what the kit holds from the
    # denial alone, then evicts one idle model and loads c (today: asked again in 60 s).
    async with coordinator(tmp_path, outside_interval_s=None, lease_timeout_s=0.5) as (eng, url):
        await two_idle(eng)
        async with kit(url) as other, other.acquire(vram_mb=KIT_MB, timeout=1):
            assert outside_mb(eng) == 0  # the books know nothing of it yet
            ticket = eng.submit("c")
            backend = await asyncio.wait_for(ticket.future, 5.0)
            assert backend is not None
            eng.finish(ticket)
            assert outside_mb(eng) == KIT_MB
            assert eng.counters["evictions"] == 1
            assert sorted(states(eng).values()) == ["ready", "ready"]
            assert states(eng)["c"] == "ready"
            (pool,) = (await other.status()).pools
            assert pool.used_mb <= GPU_MB


async def test_with_the_ledger_watched_the_request_is_placed_without_a_denial(
    tmp_path: Path,
) -> None:
    # The default lease timeout (5 s) is what one denial would cost: served well before.
    async with coordinator(tmp_path, outside_interval_s=0.05) as (eng, url):
        await two_idle(eng)
        async with kit(url) as other, other.acquire(vram_mb=KIT_MB, timeout=1):
            assert await until(lambda: outside_mb(eng) == KIT_MB)
            started = asyncio.get_running_loop().time()
            await run(eng, "c")
            assert asyncio.get_running_loop().time() - started < 2.0
            assert eng.counters["evictions"] == 1
            assert states(eng)["c"] == "ready"


async def test_an_admin_load_beside_another_program_evicts_an_idle_model(tmp_path: Path) -> None:
    # Today: 503 "no pool granted ... within 5.0 s" while idle models held the room.
    async with coordinator(tmp_path, outside_interval_s=0.05) as (eng, url):
        await two_idle(eng)
        async with kit(url) as other, other.acquire(vram_mb=KIT_MB, timeout=1):
            assert await until(lambda: outside_mb(eng) == KIT_MB)
            await eng.load("c", wait_s=3.0)
            assert states(eng)["c"] == "ready"
            assert eng.counters["evictions"] == 1


async def test_a_model_that_fits_only_once_the_other_program_leaves_waits_then_loads(
    tmp_path: Path,
) -> None:
    # d (2,000 MB) cannot fit beside the kit even with a and b gone: not a 507, a wait;
    # and once the kit gives its lease back, d loads (without evicting: there is room).
    async with coordinator(tmp_path, outside_interval_s=0.05) as (eng, url):
        await two_idle(eng)
        async with kit(url) as other:
            lease = await other.acquire(vram_mb=KIT_MB, timeout=1)
            assert await until(lambda: outside_mb(eng) == KIT_MB)
            ticket = eng.submit("d")
            await asyncio.sleep(0.5)
            assert not ticket.future.done()
            assert [q["model"] for q in eng.queue_snapshot()] == ["d"]
            await lease.release()
            backend = await asyncio.wait_for(ticket.future, 3.0)
            assert backend is not None
            eng.finish(ticket)
            assert outside_mb(eng) == 0
            assert eng.counters["evictions"] == 0
            assert states(eng) == {"a": "ready", "b": "ready", "d": "ready"}


async def test_a_wait_for_the_other_program_ends_in_503_with_retry_after(tmp_path: Path) -> None:
    # d cannot fit beside the kit even with a and b gone; the kit keeps its lease: after
    # outside_wait_s the request is answered 503, with the config's retry_after_s.
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    boss = GPUBoss(url, [Device(0, GPU_MB)], host="t")
    config = SchedulerConfig(batch_window_s=0.0, retry_after_s=9.0, outside_wait_s=0.3)
    eng = Engine(MODELS, SlotLedger(boss, None), config=config, outside_interval_s=0.05)
    await eng.start()
    try:
        async with kit(url) as other, other.acquire(vram_mb=KIT_MB, timeout=1):
            assert await until(lambda: outside_mb(eng) == KIT_MB)
            ticket = eng.submit("d")
            await asyncio.sleep(0.1)
            assert not ticket.future.done()
            with pytest.raises(RequestRejected) as caught:
                await asyncio.wait_for(ticket.future, 3.0)
            assert caught.value.status == 503
            assert caught.value.retry_after_s == 9.0
            assert f"other programs {KIT_MB} MB of {GPU_MB} MB" in str(caught.value)
    finally:
        await eng.stop()


async def test_the_ledger_counts_other_holders_and_foreign_memory_but_not_our_own(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = SlotLedger(GPUBoss(url, [Device(0, GPU_MB)], host="t"), None)
    await ledger.connect()
    try:
        assert ledger.gpu is not None
        ours = await ledger.acquire("t:gpu0", 1000, 10, "a", 1.0)
        async with kit(url) as other, other.acquire(vram_mb=3000, timeout=1):
            assert await ledger.outside() == {"t:gpu0": 3000}
            await ledger.gpu.store.set_foreign("t:gpu0", 500)  # a process with no lease
            assert await ledger.outside(["t:gpu0"]) == {"t:gpu0": 3500}
            assert await ledger.outside(["t:ram"]) == {}  # not one of its pools
        await ledger.gpu.store.set_foreign("t:gpu0", 0)
        assert await ledger.outside() == {"t:gpu0": 0}
        await ours.release()
    finally:
        await ledger.close()
