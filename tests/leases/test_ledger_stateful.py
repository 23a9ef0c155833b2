"""Hypothesis drives the ledger through random grants, renewals, releases, preemption
requests and clock jumps, and checks its promises after every step:

- live grants never exceed a pool's capacity (minus foreign memory);
- fencing tokens strictly increase per pool;
- an expired lease can never be renewed.

It runs against the memory store and the SQLite store, each on a hand-moved clock.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from model_boss.errors import LeaseLost
from model_boss.leases import LeaseRecord, LeaseRequest, LeaseStore, MemoryStore
from model_boss.leases._sqlite import SQLiteStore

T = TypeVar("T")
POOLS = {"h:gpu0": 1000, "h:gpu1": 600}
PRIORITIES = st.sampled_from([1, 5, 10, 20, 50])


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.store = self.make_store()
        self.run(self.store.connect())
        for pool, capacity in POOLS.items():
            self.run(self.store.register_pool(pool, capacity))
        self.foreign = dict.fromkeys(POOLS, 0)
        self.held: dict[str, LeaseRecord] = {}
        self.last_token = dict.fromkeys(POOLS, 0)
        self.waiting: list[LeaseRequest] = []
        self.next_id = 0

    def make_store(self) -> LeaseStore:
        return MemoryStore(clock=self.clock)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()

    def _request(self, pool: str, mb: int, prio: int, ttl: float, wait: bool) -> LeaseRequest:
        self.next_id += 1
        return LeaseRequest(
            pool=pool,
            lease_id=f"l{self.next_id:05d}",
            mb=mb,
            priority=prio,
            holder="h",
            pid=1,
            host="h",
            model_id=None,
            ttl_s=ttl,
            wait=wait,
            waiter_ttl_s=3.0,
        )

    def _record(self, lease: LeaseRecord) -> None:
        assert lease.token > self.last_token[lease.pool], "token did not increase"
        self.last_token[lease.pool] = lease.token
        self.held[lease.id] = lease

    @rule(
        pool=st.sampled_from(sorted(POOLS)),
        mb=st.integers(1, 700),
        prio=PRIORITIES,
        ttl=st.sampled_from([0.5, 2.0, 10.0]),
        wait=st.booleans(),
    )
    def grant(self, pool: str, mb: int, prio: int, ttl: float, wait: bool) -> None:
        req = self._request(pool, mb, prio, ttl, wait)
        result = self.run(self.store.grant(req))
        if result.lease is not None:
            self._record(result.lease)
            status = next(p for p in self.run(self.store.pools()) if p.pool == pool)
            assert status.used_mb + status.foreign_mb <= status.capacity_mb, "over-committed"
        else:
            assert mb + result.ahead_mb > result.free_mb, "denied although it fitted"
            if wait:
                self.waiting.append(req)

    @precondition(lambda self: bool(self.waiting))
    @rule(data=st.data())
    def retry_waiter(self, data: st.DataObject) -> None:
        req = data.draw(st.sampled_from(self.waiting))
        result = self.run(self.store.grant(req))
        if result.lease is not None:
            self.waiting.remove(req)
            self._record(result.lease)

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        lease_id = data.draw(st.sampled_from(sorted(self.held)))
        lease = self.held.pop(lease_id)
        live = lease.expires_at > self.clock.now
        released = self.run(self.store.release(lease.pool, lease_id))
        if live:
            assert released, "a live lease must be releasable"

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), ttl=st.sampled_from([0.5, 2.0, 10.0]))
    def renew(self, data: st.DataObject, ttl: float) -> None:
        lease_id = data.draw(st.sampled_from(sorted(self.held)))
        lease = self.held[lease_id]
        expired = lease.expires_at <= self.clock.now
        try:
            result = self.run(self.store.renew(lease.pool, lease_id, ttl))
        except LeaseLost:
            assert expired, "a live lease failed to renew"
            del self.held[lease_id]
            return
        assert not expired, "an expired lease was renewed"
        self.held[lease_id] = LeaseRecord(**{**lease.to_dict(), "expires_at": result.expires_at})

    @rule(pool=st.sampled_from(sorted(POOLS)), need=st.integers(1, 1000), prio=PRIORITIES)
    def preempt(self, pool: str, need: int, prio: int) -> None:
        asked = self.run(self.store.request_preemption(pool, need, prio, "test"))
        for lease_id in asked:
            assert self.held[lease_id].priority > prio

    @rule(pool=st.sampled_from(sorted(POOLS)), mb=st.integers(0, 400))
    def foreign_use(self, pool: str, mb: int) -> None:
        self.run(self.store.set_foreign(pool, mb))
        self.foreign[pool] = mb

    @rule(seconds=st.sampled_from([0.1, 0.6, 2.5, 11.0]))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @invariant()
    def live_grants_never_exceed_capacity(self) -> None:
        for status in self.run(self.store.pools()):
            live = [x for x in status.leases if x.expires_at > self.clock.now]
            assert sum(x.mb for x in live) == status.used_mb
            assert status.used_mb <= status.capacity_mb


class SQLiteLedgerMachine(LedgerMachine):
    def make_store(self) -> LeaseStore:
        self.tmp = tempfile.TemporaryDirectory()
        return SQLiteStore(Path(self.tmp.name) / "ledger.db", clock=self.clock)

    def teardown(self) -> None:
        super().teardown()
        self.tmp.cleanup()


TestMemoryLedger = LedgerMachine.TestCase
TestMemoryLedger.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestSQLiteLedger = SQLiteLedgerMachine.TestCase
TestSQLiteLedger.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
