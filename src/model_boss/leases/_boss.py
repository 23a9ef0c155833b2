"""``GPUBoss`` and ``RAMBoss``: take, hold and give back memory leases."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Coroutine, Generator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from model_boss.devices import (
    Device,
    NvmlProbe,
    discover_gpus,
    foreign_mb,
    gpu_pool_name,
    host_ram_mb,
    hostname,
    ram_pool_name,
)
from model_boss.errors import (
    AcquireTimeout,
    LeaseError,
    RequestTooLarge,
    StoreUnavailable,
    UnknownDevice,
)
from model_boss.leases._holders import holder_gone, process_started
from model_boss.leases._lease import Lease, in_background, release_in_background
from model_boss.leases._limits import (
    check_mb,
    check_model_id,
    check_poll,
    check_priority,
    check_timeout,
    check_ttl,
)
from model_boss.leases._records import GrantResult, LeaseRequest, PoolStatus
from model_boss.leases._store import LeaseStore, open_store
from model_boss.priority import Priority, PriorityLike

__all__ = ["BossStatus", "GPUBoss", "LeaseContext", "RAMBoss"]

log = logging.getLogger("model_boss.leases")

DEFAULT_TTL_S = 30.0
#: Holders renew at least this often, whatever the TTL: a renewal is also how a holder hears
#: that a more urgent waiter asks for its memory, so this bounds that waiter's extra wait.
MAX_HEARTBEAT_S = 2.0
#: A timeout shorter than this still gets one grant attempt of up to this long.
FIRST_TRY_S = 0.5
#: With no timeout, how long an unreachable store is retried before StoreUnavailable.
OUTAGE_S = 10.0
RETRY_MIN_S = 0.05
#: How long a finished acquire waits for its withdrawal from the queue (the waiter's own
#: TTL removes it anyway if the store does not answer).
WITHDRAW_WAIT_S = 0.2
#: A denied grant looks for leases of dead local processes at most this often.
REAP_EVERY_S = 1.0
RETRY_MAX_S = 1.0


def heartbeat_interval(ttl_s: float) -> float:
    """Renew every TTL/3 (two renewals may fail before expiry), and at least every 2 s."""
    return min(ttl_s / 3, MAX_HEARTBEAT_S)


@dataclass(frozen=True, slots=True)
class BossStatus:
    pools: list[PoolStatus]

    def to_dict(self) -> dict[str, Any]:
        return {"pools": [p.to_dict() for p in self.pools]}


@dataclass(slots=True)
class _Attempt:
    """What one ``acquire`` call has learnt so far (read again when its deadline hits)."""

    lease_id: str
    wait_s: float | None = None
    home: str | None = None
    queued_on: str | None = None
    free: dict[str, int] = field(default_factory=dict)
    error: StoreUnavailable | None = None
    failing: bool = False  # the last round ended in StoreUnavailable
    in_store: bool = False  # True while a round of store calls is under way
    recovering: bool = False  # the store refused grants while it recovers from a loss
    retry_after_s: float = 0.0


def _in_background(coro: Coroutine[Any, Any, object]) -> None:
    in_background(coro, "a ledger call left behind")


async def _briefly(coro: Coroutine[Any, Any, object]) -> None:
    """Run ``coro`` to its end in the background, waiting for it at most WITHDRAW_WAIT_S."""
    task = in_background(coro, "a ledger call left behind")
    await asyncio.wait({task}, timeout=WITHDRAW_WAIT_S)


class _Boss:
    """What GPUBoss and RAMBoss share: the store, the pools, and the grant loop."""

    kind = "memory"

    def __init__(
        self,
        url: str | None,
        *,
        store: LeaseStore | None,
        holder: str | None,
        host: str | None,
        ttl_s: float,
        poll_s: float,
    ) -> None:
        ttl_s = check_ttl(ttl_s)
        poll_s = check_poll(poll_s)
        self._store = store if store is not None else open_store(url)
        self.host = host or hostname()
        self.holder = holder or f"{self.host}:{os.getpid()}"
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self._capacity: dict[str, int] = {}
        self._held: dict[str, Lease] = {}
        self._connected = False
        self._pid_started = process_started(os.getpid())
        self._reaped_at = -REAP_EVERY_S

    @property
    def store(self) -> LeaseStore:
        return self._store

    @property
    def url(self) -> str:
        return self._store.url

    # -- lifecycle --------------------------------------------------------------------

    async def connect(self) -> None:
        if self._connected:
            return
        await self._store.connect()
        await self._register()
        self._connected = True
        await self.refresh_foreign()

    async def _register(self) -> None:
        for pool, capacity in self._capacity.items():
            await self._store.register_pool(pool, capacity)

    async def close(self) -> None:
        """Release every lease still held, then disconnect."""
        for lease in list(self._held.values()):
            await lease.release()
        if self._connected:
            await self._store.close()
            self._connected = False

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def refresh_foreign(self) -> None:
        """Update the memory used outside the ledger (real GPUs only)."""

    # -- queries ----------------------------------------------------------------------

    async def status(self) -> BossStatus:
        """Every pool (after clearing leases of dead processes of this host)."""
        await self.connect()
        pools = await self._store.pools()
        if await self._reap(pools):
            pools = await self._store.pools()
        return BossStatus(pools)

    async def drain(self, pool: str | None = None, reason: str = "drain") -> int:
        """Ask every holder (of one pool, or all) to release; returns how many were asked."""
        await self.connect()
        return await self._store.drain(pool, reason)

    async def cleanup(self) -> int:
        """Release leases of processes on this host that no longer exist."""
        await self.connect()
        return await self._reap(await self._store.pools())

    async def _reap(self, pools: list[PoolStatus]) -> int:
        """Release the leases, among ``pools``, whose holder is a process of this host
        that no longer exists (pid and start time, so a reused pid is not mistaken)."""
        removed = 0
        for pool in pools:
            for lease in pool.leases:
                if lease.host == self.host and holder_gone(lease.pid, lease.pid_started):
                    log.warning(
                        "lease %s (%d MiB on %s) of %s: its process %d is gone, releasing it",
                        lease.id,
                        lease.mb,
                        lease.pool,
                        lease.holder,
                        lease.pid,
                    )
                    removed += int(await self._store.release(lease.pool, lease.id))
        self._reaped_at = time.monotonic()
        return removed

    # -- acquiring --------------------------------------------------------------------

    def _acquire(
        self,
        mb: int,
        pools: Sequence[str],
        *,
        priority: PriorityLike,
        model_id: str | None,
        timeout: float | None,
        ttl_s: float | None,
        preempt: bool,
    ) -> LeaseContext:
        prio = check_priority(priority)
        timeout = check_timeout(timeout)
        ttl = self.ttl_s if ttl_s is None else check_ttl(ttl_s)
        model_id = check_model_id(model_id)
        largest = max(self._capacity[p] for p in pools)
        if mb > largest:
            raise RequestTooLarge(
                f"{mb} MiB is more than any eligible pool holds (largest: {largest} MiB)"
            )
        return LeaseContext(self, mb, list(pools), prio, model_id, timeout, ttl, preempt)

    async def _grant_loop(
        self,
        mb: int,
        pools: list[str],
        prio: int,
        model_id: str | None,
        wait_s: float | None,
        ttl: float,
        preempt: bool,
    ) -> Lease:
        """Grant attempts until granted or ``wait_s`` is spent. The deadline holds for the
        whole call, store calls included: a hung store cannot stretch it (a timeout
        under FIRST_TRY_S still gets one try of up to FIRST_TRY_S)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        attempt = _Attempt(lease_id=secrets.token_hex(8), wait_s=wait_s)
        hard = None if wait_s is None else start + max(wait_s, FIRST_TRY_S)
        deadline = None if wait_s is None else start + wait_s
        timer = asyncio.timeout_at(hard)
        try:
            async with timer:
                return await self._attempts(
                    attempt, mb, pools, prio, model_id, deadline, ttl, preempt
                )
        except TimeoutError:
            if not timer.expired():
                raise
            raise self._timed_out(attempt, mb, pools, wait_s) from attempt.error
        finally:
            if attempt.queued_on is not None:  # waited for briefly: a hung store must not hold us
                await _briefly(self._store.withdraw(attempt.queued_on, attempt.lease_id))

    def _timed_out(
        self, attempt: _Attempt, mb: int, pools: list[str], wait_s: float | None
    ) -> LeaseError:
        within = f"within {wait_s:g} s" if wait_s is not None else "in time"
        if attempt.in_store:
            return StoreUnavailable(f"the ledger {self._store.url} did not answer {within}")
        if attempt.error is not None and attempt.failing:
            return StoreUnavailable(
                f"the ledger {self._store.url} could not be used {within}: {attempt.error}"
            )
        free = ", ".join(f"{p}={attempt.free.get(p, 0)}" for p in pools)
        why = " (the ledger is recovering from a store restart)" if attempt.recovering else ""
        return AcquireTimeout(
            f"no pool granted {mb} MiB within {wait_s} s (free now: {free} MiB){why}"
        )

    async def _attempts(
        self,
        attempt: _Attempt,
        mb: int,
        pools: list[str],
        prio: int,
        model_id: str | None,
        deadline: float | None,
        ttl: float,
        preempt: bool,
    ) -> Lease:
        loop = asyncio.get_running_loop()
        delay = self.poll_s
        backoff = RETRY_MIN_S
        outage_since: float | None = None
        while True:
            attempt.in_store = True
            try:
                lease = await self._one_round(attempt, mb, pools, prio, model_id, ttl, preempt)
                attempt.in_store = False
            except StoreUnavailable as exc:
                attempt.in_store = False
                now = loop.time()
                attempt.error, attempt.failing = exc, True
                outage_since = now if outage_since is None else outage_since
                if deadline is None and now - outage_since > OUTAGE_S:
                    raise
                if deadline is not None and now >= deadline:
                    raise self._timed_out(attempt, mb, pools, attempt.wait_s) from exc
                log.info("ledger unavailable, retrying in %.2f s: %s", backoff, exc)
                pause, backoff = backoff, min(backoff * 2, RETRY_MAX_S)
            else:
                if lease is not None:
                    return lease
                attempt.failing, outage_since, backoff = False, None, RETRY_MIN_S
                pause = max(delay, attempt.retry_after_s)
                delay = min(delay * 1.5, 4 * self.poll_s)
            now = loop.time()
            if deadline is not None:
                if now >= deadline:
                    raise self._timed_out(attempt, mb, pools, attempt.wait_s)
                pause = min(pause, deadline - now)
            await asyncio.sleep(max(0.0, pause))

    async def _one_round(
        self,
        attempt: _Attempt,
        mb: int,
        pools: list[str],
        prio: int,
        model_id: str | None,
        ttl: float,
        preempt: bool,
    ) -> Lease | None:
        """One grant request to every eligible pool, the home pool last."""
        await self.connect()
        await self.refresh_foreign()
        free = attempt.free
        if attempt.home is None:
            if len(pools) > 1:  # best fit needs to know what each pool has free
                free.update(
                    {p.pool: p.free_mb for p in await self._store.pools() if p.pool in pools}
                )
            # The pool we queue on while waiting: the one that could fit us soonest.
            attempt.home = max(pools, key=lambda p: (free.get(p, 0), self._capacity[p]))
        home = attempt.home
        # Best fit: the pool with the least room left over after us goes first.
        fits = sorted((p for p in pools if free.get(p, 0) >= mb), key=lambda p: free[p])
        order = [p for p in fits if p != home] + [p for p in pools if p not in fits and p != home]
        order.append(home)
        attempt.retry_after_s = 0.0
        attempt.recovering = False
        for pool in order:
            req = LeaseRequest(
                pool=pool,
                lease_id=attempt.lease_id,
                mb=mb,
                priority=prio,
                holder=self.holder,
                pid=os.getpid(),
                host=self.host,
                model_id=model_id,
                ttl_s=ttl,
                wait=pool == home,
                waiter_ttl_s=max(2.0, 20 * self.poll_s),
                pid_started=self._pid_started,
            )
            result, sent = await self._grant_reaping(req, attempt)
            free[pool] = result.free_mb
            if result.lease is not None:
                if attempt.queued_on is not None and attempt.queued_on != pool:
                    _in_background(self._store.withdraw(attempt.queued_on, attempt.lease_id))
                attempt.queued_on = None
                return self._hold(result.lease, ttl, sent)
            if result.retry_after_s > 0:
                attempt.recovering = True
                attempt.retry_after_s = max(attempt.retry_after_s, result.retry_after_s)
                continue
            if pool == home:
                attempt.queued_on = home
                shortfall = mb + result.ahead_mb - result.free_mb
                if preempt and shortfall > 0:
                    reason = f"wanted by {self.holder} ({mb} MiB, priority {prio})"
                    await self._store.request_preemption(home, mb, prio, reason)
        return None

    async def _grant_reaping(
        self, req: LeaseRequest, attempt: _Attempt
    ) -> tuple[GrantResult, float]:
        """One grant; if the pool had too little memory, clear the leases of dead
        processes of this host (at most every REAP_EVERY_S) and, if any, grant again.
        Also returns when the granting request was sent (the lease's local clock)."""
        sent = time.monotonic()
        result = await self._grant_once(req)
        if result.lease is None and req.wait and result.retry_after_s <= 0:
            attempt.queued_on = req.pool  # queued by that grant: withdrawn if we stop now
        if (
            result.lease is None
            and result.retry_after_s <= 0
            and result.free_mb < req.mb
            and time.monotonic() - self._reaped_at >= REAP_EVERY_S
        ):
            pools = [p for p in await self._store.pools() if p.pool == req.pool]
            if await self._reap(pools):
                sent = time.monotonic()
                result = await self._grant_once(req)
        return result, sent

    async def _grant_once(self, req: LeaseRequest) -> GrantResult:
        """One grant. A store that forgot the pool (it lost its state) gets the pools
        registered again, and the grant is tried once more."""
        for again in (True, False):
            try:
                return await self._store.grant(req)
            except asyncio.CancelledError:
                # The store may still commit the grant: give it back, unawaited.
                release_in_background(self._store, req.pool, req.lease_id)
                raise
            except UnknownDevice:
                if not again or req.pool not in self._capacity:
                    raise
                log.warning("the ledger %s lost pool %s: registering it again", self.url, req.pool)
                await self._register()
        raise AssertionError("unreachable")

    def _hold(self, record: Any, ttl: float, sent: float) -> Lease:
        gpu_index = self._gpu_index(record.pool)
        lease = Lease(
            record,
            self._store,
            ttl_s=ttl,
            gpu_index=gpu_index,
            sent_at=sent,
            on_release=self._forget,
        )
        self._held[lease.id] = lease
        lease.start_heartbeat(heartbeat_interval(ttl))
        return lease

    def _forget(self, lease: Lease) -> None:
        self._held.pop(lease.id, None)

    def _gpu_index(self, pool: str) -> int | None:
        return None


def _with_descendants(pids: set[int]) -> set[int]:
    """``pids`` and every process they started (a coordinator's backends use its leases)."""
    import psutil

    out = set(pids)
    for pid in pids:
        try:
            out.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


class LeaseContext:
    """What ``acquire()`` returns: ``async with`` it (released on exit, always), or
    ``await`` it for a :class:`Lease` you release yourself."""

    def __init__(
        self,
        boss: _Boss,
        mb: int,
        pools: list[str],
        prio: int,
        model_id: str | None,
        timeout: float | None,
        ttl: float,
        preempt: bool,
    ) -> None:
        self._boss = boss
        self._args = (mb, pools, prio, model_id, timeout, ttl, preempt)
        self._lease: Lease | None = None

    def __await__(self) -> Generator[Any, None, Lease]:
        return self._boss._grant_loop(*self._args).__await__()

    async def __aenter__(self) -> Lease:
        self._lease = await self._boss._grant_loop(*self._args)
        return self._lease

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._lease is not None:
            await self._lease.release()


class GPUBoss(_Boss):
    """VRAM leases on this host's GPUs (real ones from NVML, or declared ``devices``).

    ``url``: the ledger (``memory://``, ``sqlite:///path``, ``redis://host:port/db``);
    default from ``MODEL_BOSS_REDIS_URL``/``REDIS_URL``, else the embedded SQLite ledger.
    """

    kind = "gpu"

    def __init__(
        self,
        url: str | None = None,
        devices: Sequence[Device] | None = None,
        *,
        store: LeaseStore | None = None,
        holder: str | None = None,
        host: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        poll_s: float = 0.02,
        nvml: NvmlProbe | None = None,
    ) -> None:
        super().__init__(url, store=store, holder=holder, host=host, ttl_s=ttl_s, poll_s=poll_s)
        self._nvml = nvml if nvml is not None else (None if devices is not None else NvmlProbe())
        found = list(devices) if devices is not None else discover_gpus(self._nvml)
        self.devices: dict[int, Device] = {d.index: d for d in found}
        self._pool_of = {d.index: gpu_pool_name(self.host, d.index) for d in found}
        self._index_of = {pool: index for index, pool in self._pool_of.items()}
        self._capacity = {self._pool_of[d.index]: d.total_mb for d in found}

    def pool_of(self, gpu: int) -> str:
        try:
            return self._pool_of[gpu]
        except KeyError:
            known = ", ".join(str(i) for i in sorted(self._pool_of)) or "none"
            raise UnknownDevice(f"no GPU with index {gpu} (known: {known})") from None

    def _gpu_index(self, pool: str) -> int | None:
        return self._index_of.get(pool)

    async def refresh_foreign(self) -> None:
        """On real GPUs, count memory NVML sees used by processes holding no lease."""
        if self._nvml is None or not self._nvml.available or not self._connected:
            return
        pools = {p.pool: p for p in await self._store.pools()}
        for index, pool in self._pool_of.items():
            usage = self._nvml.usage(index)
            status = pools.get(pool)
            if usage is None or status is None:
                continue
            mine = [lease for lease in status.leases if lease.host == self.host]
            pids = _with_descendants({lease.pid for lease in mine})
            await self._store.set_foreign(
                pool, foreign_mb(usage, pids, sum(lease.mb for lease in mine))
            )

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
    ) -> LeaseContext:
        """Take ``vram_mb`` MiB on the best-fitting GPU (or GPU ``gpu``).

        Waits in priority order up to ``timeout`` seconds (``None``: forever; ``0``:
        one try), asking less urgent holders to give memory back when ``preempt``.
        Raises (at once) InvalidLeaseRequest, UnknownDevice, RequestTooLarge; later
        AcquireTimeout or StoreUnavailable.
        """
        mb = check_mb(vram_mb, "vram_mb")
        if not self._pool_of:
            raise UnknownDevice(
                "no GPUs on this host (none found by NVML, none declared in MODEL_BOSS_DEVICES)"
            )
        pools = [self.pool_of(gpu)] if gpu is not None else list(self._pool_of.values())
        return self._acquire(
            mb,
            pools,
            priority=priority,
            model_id=model_id,
            timeout=timeout,
            ttl_s=ttl_s,
            preempt=preempt,
        )


class RAMBoss(_Boss):
    """RAM leases on this host's memory (one pool: ``<host>:ram``)."""

    kind = "ram"

    def __init__(
        self,
        url: str | None = None,
        *,
        total_mb: int | None = None,
        store: LeaseStore | None = None,
        holder: str | None = None,
        host: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        poll_s: float = 0.02,
    ) -> None:
        super().__init__(url, store=store, holder=holder, host=host, ttl_s=ttl_s, poll_s=poll_s)
        total = check_mb(total_mb, "total_mb") if total_mb is not None else host_ram_mb()
        self.pool = ram_pool_name(self.host)
        self.total_mb = total
        self._capacity = {self.pool: total}

    def acquire(
        self,
        ram_mb: int,
        *,
        priority: PriorityLike = Priority.NORMAL,
        model_id: str | None = None,
        timeout: float | None = None,
        ttl_s: float | None = None,
        preempt: bool = True,
    ) -> LeaseContext:
        """Take ``ram_mb`` MiB of host RAM; same waiting rules as ``GPUBoss.acquire``."""
        mb = check_mb(ram_mb, "ram_mb")
        return self._acquire(
            mb,
            [self.pool],
            priority=priority,
            model_id=model_id,
            timeout=timeout,
            ttl_s=ttl_s,
            preempt=preempt,
        )
