"""A lease whose holder is a process of this host that no longer exists is cleared by the
next grant or status on this host, in every store (pid and start time: a reused pid is
not mistaken for the holder)."""

from __future__ import annotations

import os
import secrets

from model_boss import Device, GPUBoss
from model_boss.leases import LeaseRequest, LeaseStore
from model_boss.leases._holders import process_started
from tests.leases.ledger_worker import CAPACITY_MB

GPU = [Device(0, CAPACITY_MB)]


async def _plant(store: LeaseStore, pid: int, started: float, host: str = "mp") -> str:
    """A lease written as a process ``pid`` (started at ``started``) of ``host`` would."""
    lease_id = secrets.token_hex(8)
    result = await store.grant(
        LeaseRequest(
            pool=f"{host}:gpu0",
            lease_id=lease_id,
            mb=CAPACITY_MB,
            priority=10,
            holder=f"{host}:{pid}",
            pid=pid,
            host=host,
            model_id=None,
            ttl_s=60,
            pid_started=started,
        )
    )
    assert result.lease is not None
    return lease_id


async def test_a_lease_of_a_reused_pid_is_cleared_and_a_live_one_kept(url: str) -> None:
    async with GPUBoss(url, GPU, host="mp") as boss:
        me = os.getpid()
        stale = await _plant(boss.store, me, process_started(me) - 3600)  # my pid, not me
        assert [x.id for x in (await boss.status()).pools[0].leases] == []
        mine = await _plant(boss.store, me, process_started(me))
        assert [x.id for x in (await boss.status()).pools[0].leases] == [mine]
        assert stale != mine
        await boss.store.release("mp:gpu0", mine)


async def test_another_hosts_lease_is_left_alone(url: str) -> None:
    async with GPUBoss(url, GPU, host="mp") as boss:
        await boss.store.register_pool("elsewhere:gpu0", CAPACITY_MB)
        other = await _plant(boss.store, 2**22 + 7, 1.0, host="elsewhere")  # no such pid here
        assert other in [x.id for p in (await boss.status()).pools for x in p.leases]
