"""The engine over the real scheduler, a real (memory) ledger and simulated backends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from model_boss import Device, GPUBoss
from model_boss.engine import Engine, EngineModel, RequestRejected, SlotLedger
from model_boss.errors import AcquireTimeout
from model_boss.scheduling import ModelProfile, SchedulerConfig


def model(name: str, mb: int, *, pin: bool = False, load_s: float = 0.05) -> EngineModel:
    profile = ModelProfile(name, mb, pin=pin, load_s=load_s)
    entry: dict[str, Any] = {"simulated": {"load_s": load_s, "tokens_per_s": 1000}}
    return EngineModel(profile=profile, backend="simulated", entry=entry)


@pytest.fixture
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    models = getattr(request, "param", None) or [model("a", 6000), model("b", 6000)]
    boss = GPUBoss(f"memory://engine-{secrets.token_hex(4)}", [Device(0, 10_000)], host="t")
    eng = Engine(models, SlotLedger(boss, None), config=SchedulerConfig(batch_window_s=0.0))
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()


async def run(engine: Engine, name: str, priority: int = 10, client: str = "c") -> str:
    ticket = engine.submit(name, priority=priority, client=client)
    backend = await asyncio.wait_for(ticket.future, 10)
    try:
        out = await backend.chat({"model": name, "messages": [{"role": "user", "content": "hi"}]})
        return str(out["model"]) if "model" in out else name
    finally:
        engine.finish(ticket)


async def test_alternating_requests_swap_models_that_do_not_fit_together(engine: Engine) -> None:
    for name in ["a", "b", "a", "b"]:
        await run(engine, name)
    assert engine.counters["loads"] == 4
    assert engine.counters["evictions"] >= 3
    ledger = await engine.ledger.gpu.status() if engine.ledger.gpu else None
    assert ledger is not None
    assert ledger.pools[0].used_mb <= 10_000


@pytest.mark.parametrize("engine", [[model("p", 6000, pin=True), model("b", 6000)]], indirect=True)
async def test_pinned_model_is_never_evicted(engine: Engine) -> None:
    await run(engine, "p")
    ticket = engine.submit("b")
    # The only way to fit "b" would be evicting the pinned "p": refused at once, not queued.
    with pytest.raises(RequestRejected) as info:
        await asyncio.wait_for(ticket.future, timeout=1.0)
    assert info.value.status == 507
    assert "pinned models hold 6000 MB" in str(info.value)
    states = {s["model"]: s["state"] for s in engine.slots_snapshot()}
    assert states["p"] == "ready"
    assert engine.queue_snapshot() == []


async def test_unknown_model_is_rejected_with_404(engine: Engine) -> None:
    ticket = engine.submit("nope")
    with pytest.raises(RequestRejected) as info:
        await ticket.future
    assert info.value.status == 404


async def test_high_request_queued_behind_low_ones_runs_first(engine: Engine) -> None:
    await run(engine, "a")
    holder = engine.submit("a")
    backend = await holder.future  # "a" is busy (target_inflight 1)
    order: list[str] = []

    async def one(tag: str, prio: int) -> None:
        ticket = engine.submit("a", priority=prio, client=tag)
        await ticket.future
        order.append(tag)
        engine.finish(ticket)

    lows = [asyncio.create_task(one(f"low{i}", 20)) for i in range(3)]
    await asyncio.sleep(0.05)
    high = asyncio.create_task(one("high", 5))
    await asyncio.sleep(0.05)
    queue = engine.queue_snapshot()
    assert queue[0]["client"] == "high"
    assert [q["position"] for q in queue] == [1, 2, 3, 4]
    assert backend is not None
    engine.finish(holder)
    await asyncio.gather(high, *lows)
    assert order[0] == "high"


async def test_cancelled_request_leaves_the_queue_at_once(engine: Engine) -> None:
    await run(engine, "a")
    holder = engine.submit("a")
    await holder.future
    waiting = engine.submit("a", client="leaver")
    await asyncio.sleep(0.02)
    assert [q["client"] for q in engine.queue_snapshot()] == ["leaver"]
    engine.cancel(waiting)
    assert engine.queue_snapshot() == []
    engine.finish(holder)


async def test_admin_load_and_unload(engine: Engine) -> None:
    await engine.load("a", wait_s=5)
    assert engine.model_state("a") == "ready"
    engine.unload("a")
    for _ in range(200):
        if engine.model_state("a") == "unloaded":
            break
        await asyncio.sleep(0.01)
    assert engine.model_state("a") == "unloaded"
    status = await engine.ledger.gpu.status() if engine.ledger.gpu else None
    assert status is not None
    assert status.pools[0].used_mb == 0


@contextlib.asynccontextmanager
async def coordinator(
    models: list[EngineModel],
    gpu_mb: int = 10_000,
    *,
    ttl_s: float = 0.6,
    config: SchedulerConfig | None = None,
    **kwargs: Any,
) -> AsyncIterator[tuple[Engine, str]]:
    """A started engine on one GPU of a fresh in-memory ledger, and the ledger's URL."""
    url = f"memory://engine-{secrets.token_hex(4)}"
    boss = GPUBoss(url, [Device(0, gpu_mb)], host="t", ttl_s=ttl_s)
    config = config or SchedulerConfig(batch_window_s=0.0)
    eng = Engine(models, SlotLedger(boss, None), config=config, **kwargs)
    await eng.start()
    try:
        yield eng, url
    finally:
        await eng.stop()


def holder(url: str, gpu_mb: int = 10_000, name: str = "job") -> GPUBoss:
    """Another program on the same ledger and GPU."""
    return GPUBoss(url, [Device(0, gpu_mb)], host="t", holder=name)


async def until(check: Any, timeout_s: float = 3.0) -> bool:
    for _ in range(int(timeout_s / 0.01)):
        if check():
            return True
        await asyncio.sleep(0.01)
    return bool(check())


def states(eng: Engine) -> dict[str, str]:
    return {s["model"]: s["state"] for s in eng.slots_snapshot()}


async def test_another_holder_asking_for_memory_makes_the_coordinator_evict_idle_models() -> None:
    async with coordinator([model("a", 6000)]) as (eng, url):
        await run(eng, "a")  # loaded, now idle
        async with holder(url, name="training-job") as other:
            lease = await other.acquire(vram_mb=8000, priority="high", timeout=5)
            assert lease.mb == 8000  # granted once the coordinator gave its memory back
            assert eng.model_state("a") == "unloaded"
            await lease.release()


async def test_a_ledger_waiter_evicts_only_models_last_used_by_less_urgent_clients() -> None:
    async with coordinator([model("a", 6000)]) as (eng, url):
        await run(eng, "a", priority=10)  # loaded (and leased) for a NORMAL request
        await run(eng, "a", priority=5)  # then last used by a HIGH one
        async with holder(url, name="training-job") as other:
            with pytest.raises(AcquireTimeout):  # a HIGH job does not push out a HIGH client
                await other.acquire(vram_mb=8000, priority="high", timeout=1.5)
            assert eng.model_state("a") == "ready"
            lease = await other.acquire(vram_mb=8000, priority="urgent", timeout=5)
            assert eng.model_state("a") == "unloaded"  # an URGENT one does
            await lease.release()


async def test_a_drain_makes_the_coordinator_unload_idle_models() -> None:
    async with coordinator([model("a", 6000)], config=SchedulerConfig()) as (eng, url):
        await run(eng, "a")
        async with GPUBoss(url, [Device(0, 10_000)], host="t") as admin:
            assert await admin.drain() == 1
            for _ in range(300):
                if (await admin.status()).pools[0].used_mb == 0:
                    break
                await asyncio.sleep(0.01)
            assert (await admin.status()).pools[0].used_mb == 0
        assert eng.model_state("a") == "unloaded"


async def test_a_lost_lease_stops_the_backend_before_the_slot_is_forgotten() -> None:
    async with coordinator([model("a", 6000)], ttl_s=0.3, config=SchedulerConfig()) as (eng, _):
        await run(eng, "a")
        backend = next(rt.backend for rt in eng._slots.values() if rt.backend is not None)
        lease = next(rt.leases[0] for rt in eng._slots.values() if rt.leases)
        lease.lost.set()  # as if it could not be renewed in time
        for _ in range(300):
            if backend.state.value == "stopped" and eng.model_state("a") != "ready":
                break
            await asyncio.sleep(0.01)
        assert backend.state.value == "stopped"
        assert eng.model_state("a") != "ready"


async def test_a_busy_slot_asked_for_memory_gives_it_back_once_idle() -> None:
    async with coordinator([model("a", 6000)], config=SchedulerConfig()) as (eng, url):
        ticket = eng.submit("a")
        await asyncio.wait_for(ticket.future, 5)  # the slot is busy with this request
        async with holder(url, name="other") as other:
            waiter = asyncio.create_task(
                other.acquire(vram_mb=8000, priority="high", timeout=10).__aenter__()
            )
            await asyncio.sleep(1.0)  # asked while busy: nothing may be evicted yet
            assert not waiter.done()
            assert eng.model_state("a") == "ready"
            eng.finish(ticket)  # idle now: asked again, and evicted
            lease = await asyncio.wait_for(waiter, 5)
            assert eng.model_state("a") == "unloaded"
            await lease.release()


async def test_a_ledger_waiter_gets_only_what_it_lacks_from_idle_models() -> None:
    # a (20 GB) busy, b and c (4 GB each) idle, 2 GB free: a job asking for 5 GB lacks 3 GB,
    # which one idle model gives; the ledger asked for a's whole lease.
    models = [model("a", 20_000), model("b", 4000), model("c", 4000)]
    async with coordinator(models, 30_000) as (eng, url):
        busy = eng.submit("a")
        await asyncio.wait_for(busy.future, 5)
        await run(eng, "b")
        await run(eng, "c")
        async with holder(url, 30_000) as other:
            lease = await other.acquire(vram_mb=5000, priority="high", timeout=5)
            await asyncio.sleep(0.3)
            assert eng.counters["evictions"] == 1
            assert sorted(states(eng).values()).count("ready") == 2  # a and one of b, c
            await lease.release()
        eng.finish(busy)


async def test_once_the_ledger_waiter_is_served_no_more_models_are_evicted_for_it() -> None:
    # a stays busy (requests back to back) with its lease marked preempted; b is loaded and
    # idle again and again. Nobody waits at the ledger any more: b must stay.
    async with coordinator([model("a", 6000), model("b", 6000)], 14_000) as (eng, url):
        current = eng.submit("a")
        await asyncio.wait_for(current.future, 5)
        await run(eng, "b")
        async with holder(url, 14_000) as other:
            lease = await other.acquire(vram_mb=6000, priority="high", timeout=5)
            await lease.release()
        evictions = eng.counters["evictions"]
        for _ in range(3):
            await run(eng, "b")  # loaded again if it was evicted, then idle
            following = eng.submit("a", priority=1)
            await asyncio.sleep(0.02)
            eng.finish(current)  # a request on a ends (a was asked back while busy)
            current = following
            await asyncio.wait_for(current.future, 5)
            await asyncio.sleep(0.2)
            assert states(eng).get("b") == "ready"
        assert eng.counters["evictions"] == evictions
        eng.finish(current)


async def test_an_eviction_releases_its_lease_before_the_new_slot_asks_the_ledger() -> None:
    # b is placed where a (evicted) was; if b's acquire reached the ledger before a's release,
    # the ledger would see a shortfall and ask c (an innocent idle slot) to go too.
    models = [model("a", 6000), model("b", 8000), model("c", 4000)]
    async with coordinator(models, 16_000) as (eng, _):
        assert eng.ledger.gpu is not None
        store = eng.ledger.gpu._store
        release = store.release

        async def slow_release(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0.05)  # a store round trip, as with Redis
            return await release(*args, **kwargs)

        store.release = slow_release  # type: ignore[method-assign]
        await run(eng, "a", priority=50)  # last used by BATCH: the cheapest to evict
        await run(eng, "c")
        await run(eng, "b", priority=1)
        await asyncio.sleep(0.3)
        assert eng.counters["evictions"] == 1
        assert states(eng) == {"b": "ready", "c": "ready"}


async def test_a_load_denied_its_memory_fails_at_once_and_comes_back_when_it_frees() -> None:
    config = SchedulerConfig(batch_window_s=0.0, retry_after_s=0.2)
    async with coordinator([model("a", 6000)], config=config, lease_timeout_s=0.3) as (eng, url):
        async with holder(url) as other:
            held = await other.acquire(vram_mb=8000, priority="urgent", timeout=1)
            started = asyncio.get_running_loop().time()
            with pytest.raises(RequestRejected) as caught:
                await eng.load("a", wait_s=10.0)
            assert asyncio.get_running_loop().time() - started < 3.0  # not the full wait
            assert caught.value.status == 503
            assert "not granted" in caught.value.reason
            await held.release()
            assert await until(lambda: eng.model_state("a") == "ready", 5.0)  # pinned: retried


async def test_a_load_with_room_for_fewer_replicas_than_asked_loads_those() -> None:
    profile = ModelProfile("a", 6000, load_s=0.02, replicas=1, replica_max=2)
    only = EngineModel(profile, "simulated", {"simulated": {"load_s": 0.02}})
    async with coordinator([only]) as (eng, _):
        await eng.load("a", replicas=2, wait_s=5.0)  # room for one: not a 409
        assert [(s["state"], s["pinned"]) for s in eng.slots_snapshot()] == [("ready", True)]


async def test_the_ledger_lists_each_pool_once_with_gpu_and_ram_bosses_on_one_ledger() -> None:
    from model_boss import RAMBoss

    url = f"memory://both-{secrets.token_hex(4)}"
    ledger = SlotLedger(
        GPUBoss(url, [Device(0, 1000)], host="t"), RAMBoss(url, total_mb=2000, host="t")
    )
    await ledger.connect()
    assert ledger.ram is not None
    await ledger.ram.connect()  # e.g. another program takes RAM leases on this ledger
    try:
        assert [p.pool for p in await ledger.status()] == ["t:gpu0", "t:ram"]
    finally:
        await ledger.close()


async def test_demand_survives_a_restart_through_the_demand_file(tmp_path: Path) -> None:
    demand = tmp_path / "demand.json"

    def engine() -> Engine:
        boss = GPUBoss(f"memory://demand-{secrets.token_hex(4)}", [Device(0, 10_000)], host="t")
        models = [model("a", 6000), model("b", 6000)]
        return Engine(models, SlotLedger(boss, None), demand_file=demand)

    first = engine()
    await first.start()
    for name in ["a", "a", "a", "b"]:
        await run(first, name)
    await first.stop()
    saved = json.loads(demand.read_text())["demand"]
    assert saved["a"] > saved["b"] > 0
    assert abs(sum(saved.values()) - 1.0) < 1e-9

    second = engine()
    await second.start()
    try:
        shares = second.scheduler.demand_shares()  # before any request of this run
        assert shares["a"] == pytest.approx(saved["a"])
        assert shares["b"] == pytest.approx(saved["b"])
    finally:
        await second.stop()


async def test_a_broken_demand_file_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    demand = tmp_path / "demand.json"
    demand.write_text("{not json")
    boss = GPUBoss(f"memory://bad-demand-{secrets.token_hex(4)}", [Device(0, 10_000)], host="t")
    eng = Engine([model("a", 6000)], SlotLedger(boss, None), demand_file=demand)
    await eng.start()
    try:
        assert eng.scheduler.demand_shares() == {}
        assert await run(eng, "a") == "a"
    finally:
        await eng.stop()
    assert "ignoring the saved demand" in caplog.text
    assert json.loads(demand.read_text())["demand"] == {"a": 1.0}  # rewritten at stop
