"""Blocking twins of GPUBoss and RAMBoss for code that is not async.

They run the async boss on one private event loop in a daemon thread, so heartbeats
keep going while the caller's thread blocks in its own work.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Self, TypeVar

from model_boss.devices import Device
from model_boss.leases._boss import DEFAULT_TTL_S, BossStatus, GPUBoss, RAMBoss
from model_boss.leases._lease import Lease
from model_boss.priority import Priority, PriorityLike

__all__ = ["SyncGPUBoss", "SyncLease", "SyncRAMBoss"]

T = TypeVar("T")


class _LoopThread:
    _lock = threading.Lock()
    _shared: _LoopThread | None = None

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="model-boss-sync", daemon=True
        )
        self.thread.start()

    @classmethod
    def shared(cls) -> _LoopThread:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


class SyncLease:
    """A :class:`Lease` seen from a blocking thread."""

    def __init__(self, lease: Lease, runner: _LoopThread) -> None:
        self._lease = lease
        self._runner = runner

    @property
    def id(self) -> str:
        return self._lease.id

    @property
    def pool(self) -> str:
        return self._lease.pool

    @property
    def mb(self) -> int:
        return self._lease.mb

    @property
    def vram_mb(self) -> int:
        return self._lease.mb

    @property
    def ram_mb(self) -> int:
        return self._lease.mb

    @property
    def token(self) -> int:
        return self._lease.token

    @property
    def gpu_index(self) -> int | None:
        return self._lease.gpu_index

    @property
    def priority(self) -> int:
        return self._lease.priority

    @property
    def model_id(self) -> str | None:
        return self._lease.model_id

    @property
    def lease(self) -> Lease:
        return self._lease

    @property
    def preempted(self) -> bool:
        return self._lease.preempted.is_set()

    @property
    def valid(self) -> bool:
        return self._lease.valid

    def ensure_valid(self) -> None:
        self._lease.ensure_valid()

    def release(self) -> None:
        self._runner.run(self._lease.release())

    def __repr__(self) -> str:
        return repr(self._lease).replace("<Lease", "<SyncLease", 1)


class _SyncBoss:
    _boss: GPUBoss | RAMBoss

    def __init__(self) -> None:
        self._runner = _LoopThread.shared()

    def connect(self) -> None:
        self._runner.run(self._boss.connect())

    def close(self) -> None:
        self._runner.run(self._boss.close())

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> BossStatus:
        return self._runner.run(self._boss.status())

    def drain(self, pool: str | None = None, reason: str = "drain") -> int:
        return self._runner.run(self._boss.drain(pool, reason))

    def cleanup(self) -> int:
        return self._runner.run(self._boss.cleanup())

    @contextmanager
    def _held(self, ctx: Any) -> Iterator[SyncLease]:
        future = asyncio.run_coroutine_threadsafe(_await(ctx), self._runner.loop)
        try:
            granted = future.result()
        except BaseException:
            # Ctrl-C (or any error) while waiting: stop the acquire on the loop, and give
            # back a lease it may have been granted meanwhile.
            future.cancel()
            if future.done() and not future.cancelled() and future.exception() is None:
                self._runner.run(future.result().release())
            raise
        lease = SyncLease(granted, self._runner)
        try:
            yield lease
        finally:
            lease.release()


async def _await(ctx: Any) -> Lease:
    lease: Lease = await ctx
    return lease


class SyncGPUBoss(_SyncBoss):
    def __init__(
        self,
        url: str | None = None,
        devices: Sequence[Device] | None = None,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self._boss = GPUBoss(url, devices, ttl_s=ttl_s, **kwargs)

    @property
    def boss(self) -> GPUBoss:
        assert isinstance(self._boss, GPUBoss)
        return self._boss

    def acquire(
        self,
        vram_mb: int,
        *,
        priority: PriorityLike = Priority.NORMAL,
        model_id: str | None = None,
        gpu: int | None = None,
        timeout: float | None = None,
        ttl_s: float | None = None,
        preempt: bool = True,
    ) -> AbstractContextManager[SyncLease]:
        ctx = self.boss.acquire(
            vram_mb,
            priority=priority,
            model_id=model_id,
            gpu=gpu,
            timeout=timeout,
            ttl_s=ttl_s,
            preempt=preempt,
        )
        return self._held(ctx)


class SyncRAMBoss(_SyncBoss):
    def __init__(
        self, url: str | None = None, *, ttl_s: float = DEFAULT_TTL_S, **kwargs: Any
    ) -> None:
        super().__init__()
        self._boss = RAMBoss(url, ttl_s=ttl_s, **kwargs)

    @property
    def boss(self) -> RAMBoss:
        assert isinstance(self._boss, RAMBoss)
        return self._boss

    def acquire(
        self,
        ram_mb: int,
        *,
        priority: PriorityLike = Priority.NORMAL,
        model_id: str | None = None,
        timeout: float | None = None,
        ttl_s: float | None = None,
        preempt: bool = True,
    ) -> AbstractContextManager[SyncLease]:
        ctx = self.boss.acquire(
            ram_mb,
            priority=priority,
            model_id=model_id,
            timeout=timeout,
            ttl_s=ttl_s,
            preempt=preempt,
        )
        return self._held(ctx)
