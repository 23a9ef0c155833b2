"""The pure grant rules (``_ledger``) and the SQLite ledger's upgrade of older files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from model_boss.leases import LeaseRequest, open_store
from model_boss.leases._ledger import queue_key, waiters_ahead_mb
from model_boss.leases._records import WaiterRecord


def waiter(wid: str, priority: int, since: float, seq: int, mb: int = 1000) -> WaiterRecord:
    return WaiterRecord(wid, "h:gpu0", mb, priority, seq, "h", expires_at=1e12, since=since)


def test_more_urgent_waiters_are_ahead_until_a_less_urgent_one_has_aged_past_them() -> None:
    aging = 10.0
    low = waiter("low", 20, since=100.0, seq=1)  # key 100 + 19 * 10 = 290
    new_urgent_key = queue_key(1, 150.0, aging)  # key 150
    assert waiters_ahead_mb([low], "me", new_urgent_key, now=150.0, aging_s_per_level=aging) == 0
    later_urgent_key = queue_key(1, 300.0, aging)  # key 300: the LOW waiter has aged past it
    ahead = waiters_ahead_mb([low], "me", later_urgent_key, now=300.0, aging_s_per_level=aging)
    assert ahead == 1000


def test_equal_keys_are_ordered_by_arrival() -> None:
    a = waiter("a", 10, since=5.0, seq=1)
    b = waiter("b", 10, since=5.0, seq=2)
    key = queue_key(10, 5.0, 10.0)
    assert waiters_ahead_mb([a, b], "b", key, 2, now=5.0, aging_s_per_level=10.0) == 1000
    assert waiters_ahead_mb([a, b], "a", key, 1, now=5.0, aging_s_per_level=10.0) == 0


def test_a_waiter_with_unknown_queueing_time_counts_as_queued_now() -> None:
    old = waiter("old", 50, since=0.0, seq=1)  # written by a ledger from before aging
    urgent_now = queue_key(1, 1000.0, 10.0)
    assert waiters_ahead_mb([old], "me", urgent_now, now=1000.0, aging_s_per_level=10.0) == 0


async def test_sqlite_ledger_from_before_aging_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE waiters (id TEXT NOT NULL, pool TEXT NOT NULL, mb INTEGER NOT NULL, "
        "priority INTEGER NOT NULL, seq INTEGER NOT NULL, holder TEXT NOT NULL, "
        "expires_at REAL NOT NULL, PRIMARY KEY (pool, id))"
    )
    db.execute(
        "CREATE TABLE leases (id TEXT PRIMARY KEY, pool TEXT NOT NULL, mb INTEGER NOT NULL, "
        "priority INTEGER NOT NULL, holder TEXT NOT NULL, pid INTEGER NOT NULL, "
        "host TEXT NOT NULL, model_id TEXT, token INTEGER NOT NULL, granted_at REAL NOT NULL, "
        "expires_at REAL NOT NULL, preempt INTEGER NOT NULL DEFAULT 0, "
        "preempt_reason TEXT NOT NULL DEFAULT '')"
    )
    db.commit()
    db.close()
    store = open_store(f"sqlite:///{path}")
    await store.connect()
    try:
        await store.register_pool("h:gpu0", 1000)
        request = LeaseRequest("h:gpu0", "w1", 2000, 10, "h", 1, "h", None, 30.0, wait=True)
        assert (await store.grant(request)).lease is None  # too big for now: queued
        (status,) = await store.pools()
        assert [w.id for w in status.waiters] == ["w1"]
        assert status.waiters[0].since > 0
        held = LeaseRequest("h:gpu0", "l1", 500, 20, "h", 1, "h", None, 30.0)
        assert (await store.grant(held)).lease is None  # the waiter ahead claims the pool
        await store.withdraw("h:gpu0", "w1")
        assert (await store.grant(held)).lease is not None
        assert await store.request_preemption("h:gpu0", 500, 5, "need") == ["l1"]
        assert (await store.renew("h:gpu0", "l1", 30.0)).preempt_priority == 5
    finally:
        await store.close()
