"""An in-process store: the reference implementation of the grant rules."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import ClassVar

from model_boss.errors import LeaseLost, UnknownDevice
from model_boss.leases._ledger import NO_SEQ, preemption_victims, queue_key, waiters_ahead_mb
from model_boss.leases._records import (
    GrantResult,
    LeaseRecord,
    LeaseRequest,
    PoolStatus,
    RenewResult,
    WaiterRecord,
)

__all__ = ["MemoryStore"]


@dataclasses.dataclass(slots=True)
class _Pool:
    capacity_mb: int
    foreign_mb: int = 0
    token: int = 0
    seq: int = 0
    leases: dict[str, LeaseRecord] = dataclasses.field(default_factory=dict)
    waiters: dict[str, WaiterRecord] = dataclasses.field(default_factory=dict)

    @property
    def used_mb(self) -> int:
        return sum(lease.mb for lease in self.leases.values())


class MemoryStore:
    """Process-local ledger. ``clock`` is injectable so tests can move time by hand."""

    _named: ClassVar[dict[str, MemoryStore]] = {}
    _named_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, clock: Callable[[], float] = time.time, name: str = "") -> None:
        self._clock = clock
        self._name = name
        self._pools: dict[str, _Pool] = {}
        self._lock = threading.Lock()

    @classmethod
    def named(cls, name: str) -> MemoryStore:
        """The process-wide store called ``name`` (``memory://name``)."""
        with cls._named_lock:
            if name not in cls._named:
                cls._named[name] = cls(name=name)
            return cls._named[name]

    @property
    def url(self) -> str:
        return f"memory://{self._name}"

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _pool(self, pool: str) -> _Pool:
        try:
            return self._pools[pool]
        except KeyError:
            raise UnknownDevice(f"unknown pool {pool!r}") from None

    def _purge(self, p: _Pool, now: float) -> None:
        for lease_id in [i for i, lease in p.leases.items() if lease.expires_at <= now]:
            del p.leases[lease_id]
        for waiter_id in [i for i, w in p.waiters.items() if w.expires_at <= now]:
            del p.waiters[waiter_id]

    async def register_pool(self, pool: str, capacity_mb: int) -> None:
        with self._lock:
            if pool in self._pools:
                self._pools[pool].capacity_mb = capacity_mb
            else:
                self._pools[pool] = _Pool(capacity_mb=capacity_mb)

    async def set_foreign(self, pool: str, mb: int) -> None:
        with self._lock:
            self._pool(pool).foreign_mb = max(0, mb)

    async def grant(self, req: LeaseRequest) -> GrantResult:
        with self._lock:
            now = self._clock()
            p = self._pool(req.pool)
            self._purge(p, now)
            mine = p.waiters.get(req.lease_id)
            seq = mine.seq if mine is not None else NO_SEQ
            since = mine.since if mine is not None and mine.since > 0 else now
            aging = req.aging_s_per_level
            ahead = waiters_ahead_mb(
                p.waiters.values(),
                req.lease_id,
                queue_key(req.priority, since, aging),
                seq,
                now=now,
                aging_s_per_level=aging,
            )
            free = p.capacity_mb - p.used_mb - p.foreign_mb
            if req.mb + ahead <= free:
                p.token += 1
                lease = LeaseRecord(
                    id=req.lease_id,
                    pool=req.pool,
                    mb=req.mb,
                    priority=req.priority,
                    holder=req.holder,
                    pid=req.pid,
                    host=req.host,
                    model_id=req.model_id,
                    token=p.token,
                    granted_at=now,
                    expires_at=now + req.ttl_s,
                    pid_started=req.pid_started,
                )
                p.leases[lease.id] = lease
                p.waiters.pop(req.lease_id, None)
                return GrantResult(lease, free, ahead)
            if req.wait:
                if mine is None:
                    p.seq += 1
                    next_seq = p.seq
                else:
                    next_seq = mine.seq
                p.waiters[req.lease_id] = WaiterRecord(
                    id=req.lease_id,
                    pool=req.pool,
                    mb=req.mb,
                    priority=req.priority,
                    seq=next_seq,
                    holder=req.holder,
                    expires_at=now + req.waiter_ttl_s,
                    since=since,
                )
            return GrantResult(None, free, ahead)

    async def renew(self, pool: str, lease_id: str, ttl_s: float) -> RenewResult:
        with self._lock:
            now = self._clock()
            p = self._pool(pool)
            lease = p.leases.get(lease_id)
            if lease is None or lease.expires_at <= now:
                p.leases.pop(lease_id, None)
                raise LeaseLost(f"lease {lease_id} on {pool} expired or was released")
            renewed = dataclasses.replace(lease, expires_at=now + ttl_s)
            p.leases[lease_id] = renewed
            return RenewResult(
                renewed.expires_at,
                renewed.preempt,
                renewed.preempt_reason,
                renewed.preempt_priority,
            )

    async def release(self, pool: str, lease_id: str) -> bool:
        with self._lock:
            p = self._pools.get(pool)
            return p is not None and p.leases.pop(lease_id, None) is not None

    async def withdraw(self, pool: str, waiter_id: str) -> None:
        with self._lock:
            p = self._pools.get(pool)
            if p is not None:
                p.waiters.pop(waiter_id, None)

    async def request_preemption(
        self, pool: str, need_mb: int, priority: int, reason: str
    ) -> list[str]:
        with self._lock:
            p = self._pool(pool)
            self._purge(p, self._clock())
            victims = preemption_victims(p.leases.values(), need_mb, priority)
            for lease in victims:
                p.leases[lease.id] = dataclasses.replace(
                    lease, preempt=True, preempt_reason=reason, preempt_priority=priority
                )
            return [lease.id for lease in victims]

    async def drain(self, pool: str | None, reason: str) -> int:
        with self._lock:
            now = self._clock()
            asked = 0
            for name, p in self._pools.items():
                if pool is not None and name != pool:
                    continue
                self._purge(p, now)
                for lease_id, lease in list(p.leases.items()):
                    p.leases[lease_id] = dataclasses.replace(
                        lease, preempt=True, preempt_reason=reason, preempt_priority=0
                    )
                    asked += 1
            return asked

    async def pools(self) -> list[PoolStatus]:
        with self._lock:
            now = self._clock()
            out: list[PoolStatus] = []
            for name in sorted(self._pools):
                p = self._pools[name]
                self._purge(p, now)
                out.append(
                    PoolStatus(
                        pool=name,
                        capacity_mb=p.capacity_mb,
                        used_mb=p.used_mb,
                        foreign_mb=p.foreign_mb,
                        leases=sorted(p.leases.values(), key=lambda x: x.token),
                        waiters=sorted(p.waiters.values(), key=lambda w: (w.priority, w.seq)),
                    )
                )
            return out

    async def now(self) -> float:
        return self._clock()
