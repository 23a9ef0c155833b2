"""GPUBoss / RAMBoss behaviour over every store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from model_boss import (
    AcquireTimeout,
    Device,
    GPUBoss,
    InvalidLeaseRequest,
    LeaseLost,
    Priority,
    RAMBoss,
    RequestTooLarge,
    StoreUnavailable,
    SyncGPUBoss,
    UnknownDevice,
)
from model_boss.devices import GpuUsage, NvmlProbe
from model_boss.leases import Lease, MemoryStore
from model_boss.priority import PriorityLike
from model_boss.testing import free_port

TWO_GPUS = [Device(0, 24_000, "a"), Device(1, 24_000, "b")]


def boss_for(url: str, devices: list[Device] | None = None, **kw: object) -> GPUBoss:
    return GPUBoss(url, devices or TWO_GPUS, host="h", **kw)  # type: ignore[arg-type]


async def test_acquire_yields_a_lease_and_releases_it_on_exit(url: str) -> None:
    async with boss_for(url) as boss:
        async with boss.acquire(
            vram_mb=8000, priority=Priority.HIGH, model_id="m", timeout=5
        ) as lease:
            assert lease.vram_mb == 8000
            assert lease.gpu_index in (0, 1)
            assert lease.token >= 1
            assert lease.id
            assert lease.model_id == "m"
            assert lease.priority == Priority.HIGH
            assert isinstance(lease.preempted, asyncio.Event)
            lease.ensure_valid()
            status = await boss.status()
            assert sum(p.used_mb for p in status.pools) == 8000
        assert lease.released
        assert not lease.valid
        assert sum(p.used_mb for p in (await boss.status()).pools) == 0


async def test_lease_is_released_when_the_body_raises(url: str) -> None:
    async with boss_for(url) as boss:
        with pytest.raises(RuntimeError, match="boom"):
            async with boss.acquire(vram_mb=1000, timeout=5):
                raise RuntimeError("boom")
        assert sum(p.used_mb for p in (await boss.status()).pools) == 0


async def test_best_fit_places_on_the_gpu_with_the_least_room_left(url: str) -> None:
    async with boss_for(url) as boss:
        first = await boss.acquire(vram_mb=16_000, gpu=1, timeout=5)
        second = await boss.acquire(vram_mb=6000, timeout=5)
        assert second.gpu_index == 1  # 8000 free there: a tighter fit than 24000 on gpu0
        third = await boss.acquire(vram_mb=6000, timeout=5)
        assert third.gpu_index == 0
        for lease in (first, second, third):
            await lease.release()


async def test_waiting_high_request_is_granted_before_later_low_ones(url: str) -> None:
    async with boss_for(url, [Device(0, 10_000)]) as boss:
        holder = await boss.acquire(vram_mb=9000, timeout=5)
        order: list[str] = []

        async def take(name: str, mb: int, prio: Priority) -> None:
            async with boss.acquire(vram_mb=mb, priority=prio, timeout=10, preempt=False):
                order.append(name)
                await asyncio.sleep(0.05)

        high = asyncio.create_task(take("high", 9500, Priority.HIGH))
        await eventually_queued(boss, 1)  # the HIGH request queues first
        # (a low must not fit beside the HIGH one once the holder leaves, or which of the
        # two polls first would decide the order, not the rule under test)
        lows = [asyncio.create_task(take(f"low{i}", 1000, Priority.LOW)) for i in range(3)]
        await asyncio.sleep(0.2)
        assert order == []  # 1000 MiB are free, but the HIGH waiter claims 9500 before them
        await holder.release()
        await asyncio.gather(high, *lows)
        assert order[0] == "high"
        assert sorted(order[1:]) == ["low0", "low1", "low2"]


async def eventually_queued(boss: GPUBoss, n: int) -> None:
    deadline = time.monotonic() + 3
    while sum(len(p.waiters) for p in (await boss.status()).pools) < n:
        assert time.monotonic() < deadline, "the request never queued"
        await asyncio.sleep(0.01)


async def test_higher_priority_waiter_makes_a_lower_holder_see_preempted(url: str) -> None:
    async with boss_for(url, [Device(0, 10_000)], ttl_s=0.6) as boss:
        async with boss.acquire(vram_mb=8000, priority=Priority.LOW, timeout=5) as low:
            waiter = asyncio.create_task(_take(boss, 6000, Priority.HIGH))
            await asyncio.wait_for(low.preempted.wait(), timeout=3)
            assert "6000 MiB" in low.preempt_reason
            assert not waiter.done()
        got = await asyncio.wait_for(waiter, timeout=5)
        assert got.mb == 6000
        await got.release()


async def test_a_holder_with_a_long_ttl_hears_of_a_preemption_request_within_seconds(
    url: str,
) -> None:
    async with boss_for(url, [Device(0, 10_000)], ttl_s=60) as boss:  # TTL/3 would be 20 s
        async with boss.acquire(vram_mb=8000, priority=Priority.LOW, timeout=5) as low:
            waiter = asyncio.create_task(_take(boss, 6000, Priority.HIGH))
            started = time.monotonic()
            await asyncio.wait_for(low.preempted.wait(), timeout=10)
            assert time.monotonic() - started < 6.0  # renewed every 2 s, not every 20 s
            assert low.preempt_priority == Priority.HIGH
        await (await asyncio.wait_for(waiter, timeout=5)).release()


async def _take(boss: GPUBoss, mb: int, prio: Priority) -> Lease:
    return await boss.acquire(vram_mb=mb, priority=prio, timeout=10)


async def test_same_priority_holder_is_not_preempted(url: str) -> None:
    async with boss_for(url, [Device(0, 10_000)], ttl_s=0.3) as boss:
        async with boss.acquire(vram_mb=8000, priority=Priority.NORMAL, timeout=5) as held:
            with pytest.raises(AcquireTimeout):
                await boss.acquire(vram_mb=6000, priority=Priority.NORMAL, timeout=0.5)
            assert not held.preempted.is_set()


async def test_cancelled_acquire_leaves_the_queue(url: str) -> None:
    async with boss_for(url, [Device(0, 10_000)]) as boss:
        async with boss.acquire(vram_mb=10_000, timeout=5):
            task = asyncio.create_task(_take(boss, 5000, Priority.HIGH))
            await eventually_queued(boss, 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not (await boss.status()).pools[0].waiters


async def test_acquire_times_out_with_a_typed_error(url: str) -> None:
    async with boss_for(url, [Device(0, 10_000)]) as boss:
        async with boss.acquire(vram_mb=10_000, timeout=5):
            started = time.monotonic()
            with pytest.raises(AcquireTimeout):
                await boss.acquire(vram_mb=1, timeout=0.3)
            assert time.monotonic() - started < 1.5
            assert not (await boss.status()).pools[0].waiters


async def test_heartbeat_keeps_a_lease_alive_past_its_ttl(url: str) -> None:
    async with boss_for(url, [Device(0, 10_000)], ttl_s=0.3) as boss:
        async with boss.acquire(vram_mb=10_000, timeout=5) as lease:
            await asyncio.sleep(1.0)
            assert lease.valid
            assert [x.id for x in (await boss.status()).pools[0].leases] == [lease.id]


@pytest.mark.parametrize("bad", [0, -5, True, 1.5, "100"])
async def test_bad_sizes_are_rejected_at_once(bad: object) -> None:
    boss = boss_for("memory://bad-sizes")
    with pytest.raises(InvalidLeaseRequest):
        boss.acquire(vram_mb=bad)  # type: ignore[arg-type]


def test_size_larger_than_every_gpu_is_rejected_at_once() -> None:
    boss = boss_for("memory://too-large")
    with pytest.raises(RequestTooLarge):
        boss.acquire(vram_mb=24_001)
    with pytest.raises(RequestTooLarge):
        RAMBoss("memory://too-large", total_mb=1000, host="h").acquire(ram_mb=1001)


def test_unknown_gpu_index_is_rejected_at_once() -> None:
    with pytest.raises(UnknownDevice, match="no GPU with index 7"):
        boss_for("memory://unknown").acquire(vram_mb=10, gpu=7)
    with pytest.raises(UnknownDevice, match="no GPUs"):
        GPUBoss("memory://none", devices=[]).acquire(vram_mb=10)


@pytest.mark.parametrize("bad", ["extreme", 0, -1, None])
def test_bad_priority_is_rejected_at_once(bad: object) -> None:
    with pytest.raises(InvalidLeaseRequest):
        boss_for("memory://prio").acquire(vram_mb=10, priority=bad)  # type: ignore[arg-type]


async def test_priority_accepts_names_and_ints() -> None:
    cases: list[tuple[PriorityLike, int]] = [
        ("urgent", 1),
        ("HIGH", 5),
        (7, 7),
        (Priority.BATCH, 50),
        ("20", 20),
    ]
    async with boss_for("memory://prio-ok") as boss:
        for given, expected in cases:
            async with boss.acquire(vram_mb=10, priority=given, timeout=1) as lease:
                assert lease.priority == expected


async def test_unreachable_redis_fails_fast_with_store_unavailable() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot reach"):
        async with GPUBoss(f"redis://127.0.0.1:{port}/0", TWO_GPUS):
            pass
    assert time.monotonic() - started < 3


async def test_unwritable_sqlite_path_fails_with_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        async with GPUBoss(f"sqlite:///{blocker}/sub/ledger.db", TWO_GPUS):
            pass


async def test_lease_self_fences_when_it_cannot_renew_in_time() -> None:
    store = FlakyStore()
    async with GPUBoss(store=store, devices=[Device(0, 1000)], ttl_s=0.3) as boss:
        lease = await boss.acquire(vram_mb=500, timeout=1)
        store.down = True
        await asyncio.wait_for(lease.lost.wait(), timeout=2)
        assert not lease.valid
        with pytest.raises(LeaseLost):
            lease.ensure_valid()
        store.down = False
        await lease.release()


class FlakyStore(MemoryStore):
    """A memory store whose renewals fail while ``down`` (a network partition)."""

    down = False

    async def renew(self, pool: str, lease_id: str, ttl_s: float):  # type: ignore[no-untyped-def]
        if self.down:
            raise StoreUnavailable("partitioned")
        return await super().renew(pool, lease_id, ttl_s)


async def test_ram_boss_leases_host_memory(url: str) -> None:
    async with RAMBoss(url, total_mb=4096, host="h") as boss:
        async with boss.acquire(ram_mb=3000, timeout=5) as lease:
            assert lease.pool == "h:ram"
            assert lease.ram_mb == 3000
            assert lease.gpu_index is None
            with pytest.raises(AcquireTimeout):
                await boss.acquire(ram_mb=2000, timeout=0.2)
        status = await boss.status()
        assert [(p.pool, p.capacity_mb, p.used_mb) for p in status.pools] == [("h:ram", 4096, 0)]


def test_ram_boss_defaults_to_the_host_total() -> None:
    from model_boss.devices import host_ram_mb

    boss = RAMBoss("memory://ram-default", host="h")
    assert boss.total_mb == host_ram_mb() > 0


def test_sync_twin_acquires_and_releases(tmp_path: Path) -> None:
    boss = SyncGPUBoss(f"sqlite:///{tmp_path}/l.db", [Device(0, 1000)], host="h")
    with boss:
        with boss.acquire(vram_mb=600, timeout=2, model_id="sync") as lease:
            assert lease.valid
            assert lease.gpu_index == 0
            assert boss.status().pools[0].used_mb == 600
            with pytest.raises(AcquireTimeout), boss.acquire(vram_mb=600, timeout=0.1):
                pass
        assert boss.status().pools[0].used_mb == 0


async def test_cleanup_removes_leases_of_dead_local_processes(url: str) -> None:
    async with boss_for(url, [Device(0, 1000)]) as boss:
        lease = await boss.acquire(vram_mb=400, timeout=1)
        dead = await boss.acquire(vram_mb=400, timeout=1)
        await boss.store.release(dead.pool, dead.id)
        rec = dead.record
        from model_boss.leases import LeaseRequest

        ghost = await boss.store.grant(
            LeaseRequest(rec.pool, "ghost", 300, 10, "ghost", 2**22 + 12345, "h", None, 30)
        )
        assert ghost.lease is not None
        assert await boss.cleanup() == 1
        ids = [x.id for x in (await boss.status()).pools[0].leases]
        assert ids == [lease.id]
        await lease.release()


class FakeNvml(NvmlProbe):
    def __init__(self, usage: GpuUsage) -> None:
        super().__init__()
        self._usage = usage

    @property
    def available(self) -> bool:
        return True

    def usage(self, index: int) -> GpuUsage | None:
        return self._usage


async def test_memory_used_outside_the_ledger_is_never_granted() -> None:
    # NVML: 6000 MiB in use by pid 999, which holds no lease.
    nvml = FakeNvml(GpuUsage(0, 10_000, 6000, {999: 6000}))
    async with GPUBoss("memory://nvml", [Device(0, 10_000)], host="h", nvml=nvml) as boss:
        with pytest.raises(AcquireTimeout):
            await boss.acquire(vram_mb=5000, timeout=0.1)
        async with boss.acquire(vram_mb=4000, timeout=1):
            pass
        assert (await boss.status()).pools[0].foreign_mb == 6000


async def test_a_redis_that_accepts_but_never_answers_fails_fast() -> None:
    from model_boss.leases._redis import RedisStore

    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await done.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0", command_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.connect()
    assert time.monotonic() - started < 3
    done.set()
    server.close()
    await server.wait_closed()


async def test_a_stopped_redis_fails_calls_fast_instead_of_hanging(valkey_url: str) -> None:
    import os
    import signal

    from model_boss.leases._redis import RedisStore
    from model_boss.testing import ValkeyServer

    own = ValkeyServer()
    url = own.start()
    store = RedisStore(url, command_timeout_s=0.3)
    try:
        await store.connect()
        await store.register_pool("h:gpu0", 100)
        assert own._proc is not None
        os.kill(own._proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="did not answer"):
            await store.pools()
        assert time.monotonic() - started < 2
        os.kill(own._proc.pid, signal.SIGCONT)
    finally:
        await store.close()
        own.stop()


class HangingStore(MemoryStore):
    """A memory store whose renewals never answer (a hung connection)."""

    hang = False

    async def renew(self, pool: str, lease_id: str, ttl_s: float):  # type: ignore[no-untyped-def]
        if self.hang:
            await asyncio.Event().wait()
        return await super().renew(pool, lease_id, ttl_s)


async def test_a_lease_is_fenced_at_its_deadline_even_while_a_renewal_hangs() -> None:
    store = HangingStore()
    async with GPUBoss(store=store, devices=[Device(0, 1000)], ttl_s=0.3) as boss:
        lease = await boss.acquire(vram_mb=500, timeout=1)
        store.hang = True
        await asyncio.wait_for(lease.lost.wait(), timeout=2)
        store.hang = False
        await lease.release()


class SlowGrantStore(MemoryStore):
    """Commits the grant, then takes a while to answer (a slow network)."""

    async def grant(self, req):  # type: ignore[no-untyped-def]
        result = await super().grant(req)
        await asyncio.sleep(0.5)
        return result


async def test_cancelling_an_acquire_mid_grant_gives_the_memory_back() -> None:
    store = SlowGrantStore()
    async with GPUBoss(store=store, devices=[Device(0, 1000)]) as boss:
        task = asyncio.create_task(_take(boss, 800, Priority.NORMAL))
        await asyncio.sleep(0.1)  # the store has committed the grant; the answer is on its way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if (await boss.status()).pools[0].used_mb == 0:
                break
            await asyncio.sleep(0.01)
        assert (await boss.status()).pools[0].used_mb == 0


async def test_a_lease_holders_child_processes_are_not_foreign() -> None:
    import os
    import sys

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(30)"
    )
    try:
        # NVML: this process's child (a backend it started) uses 3000 MiB under our lease.
        nvml = FakeNvml(GpuUsage(0, 10_000, 3000, {child.pid: 3000}))
        async with GPUBoss("memory://children", [Device(0, 10_000)], host="h", nvml=nvml) as boss:
            lease = await boss.acquire(vram_mb=3000, timeout=1)
            assert lease.record.pid == os.getpid()
            await boss.refresh_foreign()
            assert (await boss.status()).pools[0].foreign_mb == 0
            await lease.release()
    finally:
        child.kill()
        await child.wait()
