"""The coordinator as one lease holder among many: scheduler pools -> lease bosses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from model_boss.backends import LeaseBudget
from model_boss.leases import GPUBoss, Lease, PoolStatus, RAMBoss
from model_boss.scheduling import PoolSpec

__all__ = ["SlotLedger"]


@dataclass(frozen=True, slots=True)
class _Target:
    boss: GPUBoss | RAMBoss
    gpu: int | None


class SlotLedger:
    """Takes the lease for a slot's memory on each of its pools.

    With GPUs, the pools are the GPUs; without any, the host RAM is the one pool. With
    ``ram_pool`` the host RAM is offered beside the GPUs too, for models that run on the CPU
    (their profile's ``pool_kind`` is ``ram``).
    """

    def __init__(self, gpu: GPUBoss | None, ram: RAMBoss | None, *, ram_pool: bool = False) -> None:
        self._targets: dict[str, _Target] = {}
        self._specs: list[PoolSpec] = []
        if gpu is not None:
            for index, device in sorted(gpu.devices.items()):
                pool = gpu.pool_of(index)
                self._targets[pool] = _Target(gpu, index)
                self._specs.append(PoolSpec(pool, device.total_mb, kind="gpu"))
        if (ram_pool or not self._specs) and ram is not None:
            self._targets[ram.pool] = _Target(ram, None)
            self._specs.append(PoolSpec(ram.pool, ram.total_mb, kind="ram"))
        self.gpu = gpu
        self.ram = ram

    @property
    def url(self) -> str:
        boss = self.gpu or self.ram
        return boss.url if boss is not None else ""

    @property
    def pools(self) -> list[PoolSpec]:
        return list(self._specs)

    async def status(self) -> list[PoolStatus]:
        """Every pool of the ledger, once (the GPU and RAM bosses share one ledger, and
        may be separate ledgers too: pools are merged by name)."""
        seen: dict[str, PoolStatus] = {}
        urls: set[str] = set()
        for boss in (self.gpu, self.ram):
            if boss is None or boss.url in urls:
                continue
            urls.add(boss.url)
            for pool in (await boss.status()).pools:
                seen.setdefault(pool.pool, pool)
        return [seen[name] for name in sorted(seen)]

    async def pool_status(self, pool: str) -> PoolStatus | None:
        """One pool's leases and waiters (None for a pool this ledger does not know)."""
        target = self._targets.get(pool)
        if target is None:
            return None
        return next((p for p in (await target.boss.status()).pools if p.pool == pool), None)

    async def outside(self, pools: Iterable[str] | None = None) -> dict[str, int]:
        """MB held on each of ``pools`` (default: all of the coordinator's) by anyone but
        this coordinator: other holders' leases plus memory the ledger counts as foreign
        (refreshed from NVML first on real GPUs)."""
        wanted = set(self._targets) if pools is None else set(pools) & set(self._targets)
        if not wanted:
            return {}
        if self.gpu is not None and any(self._targets[p].gpu is not None for p in wanted):
            await self.gpu.refresh_foreign()
        out: dict[str, int] = {}
        for status in await self.status():
            if status.pool not in wanted:
                continue
            mine = self.holder(status.pool)
            own = sum(lease.mb for lease in status.leases if lease.holder == mine)
            out[status.pool] = max(0, status.used_mb + status.foreign_mb - own)
        return out

    def holder(self, pool: str) -> str | None:
        """The name this coordinator holds (and waits for) leases under on ``pool``."""
        target = self._targets.get(pool)
        return None if target is None else target.boss.holder

    def gpu_index(self, pool: str) -> int | None:
        target = self._targets.get(pool)
        return None if target is None else target.gpu

    def budget(self, leases: Iterable[Lease]) -> LeaseBudget:
        """What a slot's leases let its backend use: MB per GPU (with each GPU's total),
        or MB of the host RAM pool."""
        totals = {spec.pool_id: spec.capacity_mb for spec in self._specs}
        gpu_mb: dict[int, int] = {}
        gpu_total_mb: dict[int, int] = {}
        ram_mb = 0
        for lease in leases:
            index = self.gpu_index(lease.pool)
            if index is None:
                ram_mb += lease.mb
                continue
            gpu_mb[index] = gpu_mb.get(index, 0) + lease.mb
            gpu_total_mb[index] = totals[lease.pool]
        devices = self.gpu.devices if self.gpu is not None else {}
        declared = any(not (devices[i].uuid if i in devices else "") for i in gpu_mb)
        return LeaseBudget(gpu_mb, gpu_total_mb, ram_mb, gpus_declared=declared)

    async def connect(self) -> None:
        for boss in {id(t.boss): t.boss for t in self._targets.values()}.values():
            await boss.connect()

    async def close(self) -> None:
        for boss in (self.gpu, self.ram):
            if boss is not None:
                await boss.close()

    async def acquire(
        self,
        pool: str,
        mb: int,
        priority: int,
        model_id: str,
        timeout_s: float,
        *,
        preempt: bool = True,
    ) -> Lease:
        """A lease of ``mb`` on ``pool``; ``timeout_s=0`` with ``preempt=False`` is one try
        that asks no other holder for memory (how a slot over its lease asks for more)."""
        target = self._targets[pool]
        if isinstance(target.boss, GPUBoss):
            return await target.boss.acquire(
                vram_mb=mb,
                gpu=target.gpu,
                priority=priority,
                model_id=model_id,
                timeout=timeout_s,
                preempt=preempt,
            )
        return await target.boss.acquire(
            ram_mb=mb, priority=priority, model_id=model_id, timeout=timeout_s, preempt=preempt
        )
