"""One contract, every store: memory, SQLite, a real Valkey (and a real Redis if given)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from model_boss.errors import LeaseLost, UnknownDevice
from model_boss.leases import LeaseRequest, LeaseStore
from model_boss.priority import Priority


def req(
    mb: int,
    *,
    pool: str = "h:gpu0",
    priority: int = Priority.NORMAL,
    wait: bool = False,
    ttl_s: float = 30.0,
    lease_id: str | None = None,
    waiter_ttl_s: float = 5.0,
    aging_s_per_level: float = 10.0,
) -> LeaseRequest:
    return LeaseRequest(
        pool=pool,
        lease_id=lease_id or secrets.token_hex(8),
        mb=mb,
        priority=int(priority),
        holder="tester",
        pid=1,
        host="h",
        model_id="m",
        ttl_s=ttl_s,
        wait=wait,
        waiter_ttl_s=waiter_ttl_s,
        aging_s_per_level=aging_s_per_level,
    )


async def used(store: LeaseStore, pool: str = "h:gpu0") -> int:
    return next(p.used_mb for p in await store.pools() if p.pool == pool)


async def wait_until_expired(store: LeaseStore, expires_at: float) -> None:
    while await store.now() <= expires_at:
        await asyncio.sleep(0.02)


async def test_grant_within_capacity_records_the_lease(store: LeaseStore) -> None:
    result = await store.grant(req(4000))
    assert result.lease is not None
    assert result.lease.mb == 4000
    assert result.lease.pool == "h:gpu0"
    assert result.lease.model_id == "m"
    assert result.lease.expires_at > result.lease.granted_at
    assert result.free_mb == 10_000
    assert await used(store) == 4000


async def test_grant_beyond_free_memory_is_denied(store: LeaseStore) -> None:
    assert (await store.grant(req(7000))).lease is not None
    denied = await store.grant(req(4000))
    assert denied.lease is None
    assert denied.free_mb == 3000
    assert await used(store) == 7000


async def test_release_gives_memory_back_once(store: LeaseStore) -> None:
    lease = (await store.grant(req(10_000))).lease
    assert lease is not None
    assert await store.release("h:gpu0", lease.id) is True
    assert await store.release("h:gpu0", lease.id) is False
    assert await used(store) == 0
    assert (await store.grant(req(10_000))).lease is not None


async def test_tokens_strictly_increase_per_pool(store: LeaseStore) -> None:
    tokens: dict[str, list[int]] = {"h:gpu0": [], "h:gpu1": []}
    for i in range(6):
        pool = "h:gpu0" if i % 2 else "h:gpu1"
        lease = (await store.grant(req(1000, pool=pool))).lease
        assert lease is not None
        tokens[pool].append(lease.token)
        if i % 3 == 0:
            await store.release(pool, lease.id)
    for seq in tokens.values():
        assert seq == sorted(seq)
        assert len(set(seq)) == len(seq)
        assert seq[0] >= 1


async def test_renew_extends_a_live_lease(store: LeaseStore) -> None:
    lease = (await store.grant(req(1000, ttl_s=5))).lease
    assert lease is not None
    renewed = await store.renew("h:gpu0", lease.id, 60)
    assert renewed.expires_at > lease.expires_at + 50
    assert renewed.preempt is False


async def test_released_lease_cannot_be_renewed(store: LeaseStore) -> None:
    lease = (await store.grant(req(1000))).lease
    assert lease is not None
    await store.release("h:gpu0", lease.id)
    with pytest.raises(LeaseLost):
        await store.renew("h:gpu0", lease.id, 30)


async def test_expired_lease_is_purged_and_cannot_be_renewed(store: LeaseStore) -> None:
    lease = (await store.grant(req(9000, ttl_s=0.15))).lease
    assert lease is not None
    await wait_until_expired(store, lease.expires_at)
    with pytest.raises(LeaseLost):
        await store.renew("h:gpu0", lease.id, 30)
    assert await used(store) == 0
    assert (await store.grant(req(10_000))).lease is not None


async def test_expired_memory_returns_to_the_next_grant(store: LeaseStore) -> None:
    lease = (await store.grant(req(9000, ttl_s=0.15))).lease
    assert lease is not None
    assert (await store.grant(req(5000))).lease is None
    await wait_until_expired(store, lease.expires_at)
    assert (await store.grant(req(5000))).lease is not None


async def test_a_queued_waiter_reserves_memory_against_later_less_urgent_requests(
    store: LeaseStore,
) -> None:
    holder = (await store.grant(req(6000))).lease
    assert holder is not None
    big = req(8000, priority=Priority.HIGH, wait=True)
    first = await store.grant(big)
    assert first.lease is None
    # 4000 MiB are free, but the HIGH waiter ahead claims 8000: a LOW 1000 must wait.
    small_low = await store.grant(req(1000, priority=Priority.LOW))
    assert small_low.lease is None
    assert small_low.ahead_mb == 8000
    # An URGENT request is not behind a HIGH waiter.
    assert (await store.grant(req(1000, priority=Priority.URGENT))).lease is not None
    await store.release("h:gpu0", holder.id)
    granted = await store.grant(big)
    assert granted.lease is not None
    assert not (await store.pools())[0].waiters


async def test_waiters_of_one_priority_are_served_first_come_first_served(
    store: LeaseStore,
) -> None:
    holder = (await store.grant(req(10_000))).lease
    assert holder is not None
    a = req(6000, wait=True)
    b = req(6000, wait=True)
    assert (await store.grant(a)).lease is None
    assert (await store.grant(b)).lease is None
    await store.release("h:gpu0", holder.id)
    assert (await store.grant(b)).lease is None  # a is ahead
    assert (await store.grant(a)).lease is not None
    assert (await store.grant(req(6000, wait=True, lease_id=b.lease_id))).lease is None


async def test_a_batch_waiter_that_waited_long_enough_is_ahead_of_new_urgent_work(
    store: LeaseStore,
) -> None:
    aging = 0.01  # s per priority level: BATCH (50) overtakes URGENT (1) after 0.49 s
    holder = (await store.grant(req(8000))).lease
    assert holder is not None
    batch = req(5000, priority=Priority.BATCH, wait=True, aging_s_per_level=aging)
    queued = await store.grant(batch)
    assert queued.lease is None
    since = next(w.since for w in (await store.pools())[0].waiters if w.id == batch.lease_id)
    assert since > 0
    # At first URGENT work goes ahead of the BATCH waiter...
    early = await store.grant(req(2000, priority=Priority.URGENT, aging_s_per_level=aging))
    assert early.lease is not None
    await store.release("h:gpu0", early.lease.id)
    # ...but once the waiter has aged past URGENT, new URGENT work queues behind it.
    await wait_until_expired(store, since + 49 * aging + 0.05)
    late = await store.grant(req(2000, priority=Priority.URGENT, aging_s_per_level=aging))
    assert late.lease is None
    assert late.ahead_mb == 5000
    await store.release("h:gpu0", holder.id)
    assert (await store.grant(batch)).lease is not None


async def test_withdrawn_waiter_no_longer_blocks(store: LeaseStore) -> None:
    holder = (await store.grant(req(5000))).lease
    assert holder is not None
    big = req(8000, priority=Priority.HIGH, wait=True)
    await store.grant(big)
    assert (await store.grant(req(1000))).lease is None
    await store.withdraw("h:gpu0", big.lease_id)
    assert (await store.grant(req(1000))).lease is not None


async def test_a_waiter_that_stops_polling_expires(store: LeaseStore) -> None:
    holder = (await store.grant(req(5000))).lease
    assert holder is not None
    await store.grant(req(8000, priority=Priority.HIGH, wait=True, waiter_ttl_s=0.15))
    assert (await store.grant(req(1000))).lease is None
    deadline = await store.now() + 0.2
    await wait_until_expired(store, deadline)
    assert (await store.grant(req(1000))).lease is not None


async def test_preemption_asks_only_less_urgent_holders_for_enough_memory(
    store: LeaseStore,
) -> None:
    ids = {}
    for name, mb, prio in [
        ("urgent", 2000, Priority.URGENT),
        ("batch_small", 1000, Priority.BATCH),
        ("batch_big", 3000, Priority.BATCH),
        ("low", 3000, Priority.LOW),
    ]:
        lease = (await store.grant(req(mb, priority=prio))).lease
        assert lease is not None
        ids[name] = lease.id
    asked = await store.request_preemption("h:gpu0", 3000, int(Priority.HIGH), "need it")
    assert asked == [ids["batch_big"]]
    # Asked leases count toward the need: asking again for the same need asks nobody new.
    assert await store.request_preemption("h:gpu0", 3000, int(Priority.HIGH), "again") == []
    more = await store.request_preemption("h:gpu0", 4000, int(Priority.HIGH), "more")
    assert more == [ids["batch_small"]]
    notice = await store.renew("h:gpu0", ids["batch_big"], 30)
    assert notice.preempt is True
    assert notice.preempt_reason == "need it"
    assert notice.preempt_priority == Priority.HIGH
    assert (await store.renew("h:gpu0", ids["urgent"], 30)).preempt is False
    assert await store.request_preemption("h:gpu0", 9000, int(Priority.URGENT), "x") != []
    assert (await store.renew("h:gpu0", ids["urgent"], 30)).preempt is False


async def test_drain_asks_every_holder(store: LeaseStore) -> None:
    a = (await store.grant(req(1000))).lease
    b = (await store.grant(req(1000, pool="h:gpu1", priority=Priority.URGENT))).lease
    assert a is not None
    assert b is not None
    assert await store.drain("h:gpu1", "maintenance") == 1
    assert (await store.renew("h:gpu0", a.id, 30)).preempt is False
    assert (await store.renew("h:gpu1", b.id, 30)).preempt_reason == "maintenance"
    assert await store.drain(None, "all") == 2
    assert (await store.renew("h:gpu0", a.id, 30)).preempt is True


async def test_a_more_urgent_waiter_asks_again_a_holder_already_asked_less_urgently(
    store: LeaseStore,
) -> None:
    low = (await store.grant(req(4000, priority=Priority.LOW))).lease
    assert low is not None
    assert await store.request_preemption("h:gpu0", 4000, int(Priority.HIGH), "high") == [low.id]
    # The holder may have declined (its memory serves HIGH work too): URGENT asks again.
    assert await store.request_preemption("h:gpu0", 4000, int(Priority.HIGH), "again") == []
    again = await store.request_preemption("h:gpu0", 4000, int(Priority.URGENT), "urgent")
    assert again == [low.id]
    notice = await store.renew("h:gpu0", low.id, 30)
    assert (notice.preempt_priority, notice.preempt_reason) == (Priority.URGENT, "urgent")
    assert await store.request_preemption("h:gpu0", 4000, int(Priority.HIGH), "late") == []
    assert (await store.renew("h:gpu0", low.id, 30)).preempt_priority == Priority.URGENT


async def test_a_drain_after_a_preemption_asks_as_everyone(store: LeaseStore) -> None:
    low = (await store.grant(req(4000, priority=Priority.LOW))).lease
    assert low is not None
    assert await store.request_preemption("h:gpu0", 4000, int(Priority.HIGH), "x") == [low.id]
    assert (await store.renew("h:gpu0", low.id, 30)).preempt_priority == Priority.HIGH
    await store.drain("h:gpu0", "maintenance")
    assert (await store.renew("h:gpu0", low.id, 30)).preempt_priority == 0
    (status,) = [p for p in await store.pools() if p.pool == "h:gpu0"]
    assert [lease.preempt_priority for lease in status.leases] == [0]


async def test_foreign_memory_is_never_granted(store: LeaseStore) -> None:
    await store.set_foreign("h:gpu0", 7000)
    assert (await store.grant(req(4000))).lease is None
    status = next(p for p in await store.pools() if p.pool == "h:gpu0")
    assert status.free_mb == 3000
    assert status.foreign_mb == 7000
    assert (await store.grant(req(3000))).lease is not None


async def test_unknown_pool_is_an_error(store: LeaseStore) -> None:
    with pytest.raises(UnknownDevice):
        await store.grant(req(10, pool="h:gpu9"))
    with pytest.raises(UnknownDevice):
        await store.request_preemption("h:gpu9", 10, 1, "x")
    with pytest.raises(UnknownDevice):
        await store.set_foreign("h:gpu9", 10)


async def test_pools_lists_live_leases_and_waiters(store: LeaseStore) -> None:
    lease = (await store.grant(req(6000))).lease
    assert lease is not None
    waiting = req(6000, priority=Priority.LOW, wait=True)
    await store.grant(waiting)
    gpu0, gpu1 = await store.pools()
    assert (gpu0.pool, gpu1.pool) == ("h:gpu0", "h:gpu1")
    assert [x.id for x in gpu0.leases] == [lease.id]
    assert [w.id for w in gpu0.waiters] == [waiting.lease_id]
    assert gpu0.waiters[0].priority == Priority.LOW
    assert gpu0.to_dict()["free_mb"] == 4000
    assert gpu1.leases == []


async def test_register_pool_updates_capacity(store: LeaseStore) -> None:
    await store.register_pool("h:gpu0", 20_000)
    assert (await store.grant(req(15_000))).lease is not None
    assert next(p for p in await store.pools() if p.pool == "h:gpu0").capacity_mb == 20_000


async def test_sqlite_waits_for_another_writer_without_blocking_the_event_loop(
    tmp_path: Path,
) -> None:
    import sqlite3
    import threading

    from model_boss.leases._sqlite import SQLiteStore

    path = tmp_path / "ledger.db"
    store = SQLiteStore(path)
    await store.connect()
    await store.register_pool("h:gpu0", 1000)
    holding = threading.Event()
    release = threading.Event()

    def other_process_writes() -> None:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")  # holds the write lock
        holding.set()
        release.wait(5)
        db.execute("COMMIT")
        db.close()

    writer = threading.Thread(target=other_process_writes)
    writer.start()
    assert holding.wait(5)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    grant = asyncio.create_task(store.grant(req(100)))
    await asyncio.sleep(0.3)
    assert not grant.done()  # waiting for the lock...
    assert ticks >= 10  # ...while the event loop kept running
    release.set()
    result = await asyncio.wait_for(grant, 5)
    assert result.lease is not None
    # Back to the fast path once the worker thread is idle.
    assert (await store.grant(req(100))).lease is not None
    tick_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await tick_task
    writer.join()
    await store.close()
