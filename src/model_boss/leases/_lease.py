"""A granted lease as its holder sees it: heartbeat, preemption notice, self-fencing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from model_boss.errors import LeaseLost, StoreUnavailable
from model_boss.leases._records import LeaseRecord
from model_boss.leases._recovery import MAX_BELIEF_S

if TYPE_CHECKING:
    from model_boss.leases._store import LeaseStore

__all__ = ["Lease", "in_background", "release_in_background"]

log = logging.getLogger("model_boss.leases")


class Lease:
    """Memory granted to this holder until released, expired or fenced.

    ``preempted`` is set when a more urgent waiter (or a drain) asks for the memory
    back; the holder decides when to give it. ``lost`` is set when the lease could not
    be renewed in time: from then on the memory is not yours (``valid`` is False and
    ``ensure_valid()`` raises :class:`~model_boss.errors.LeaseLost`).
    """

    def __init__(
        self,
        record: LeaseRecord,
        store: LeaseStore,
        *,
        ttl_s: float,
        gpu_index: int | None,
        sent_at: float,
        on_release: Callable[[Lease], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.record = record
        self.gpu_index = gpu_index
        self.ttl_s = ttl_s
        self.preempted = asyncio.Event()
        self.lost = asyncio.Event()
        self.preempt_reason = ""
        self.preempt_priority = 0  # the asker's priority once preempted; 0: a drain
        #: Set when, after ``preempted``, a more urgent waiter (or a drain) asks again.
        self.preempt_escalated = asyncio.Event()
        self.expires_at = record.expires_at
        self._store = store
        self._clock = clock
        # Local deadline: measured from before the request was sent, so it always
        # passes before the store's own expiry (clocks tick at the same rate); and never
        # more than MAX_BELIEF_S ahead, which bounds how long a store that lost its state
        # must wait before it grants again (see _recovery.py).
        self._belief_s = min(ttl_s, MAX_BELIEF_S)
        self._valid_until = sent_at + self._belief_s
        self._released = False
        self._on_release = on_release
        self._heartbeat: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._fence_timer: asyncio.TimerHandle | None = None
        self._interval_s = ttl_s / 3

    # -- identity ---------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def pool(self) -> str:
        return self.record.pool

    @property
    def mb(self) -> int:
        return self.record.mb

    @property
    def vram_mb(self) -> int:
        return self.record.mb

    @property
    def ram_mb(self) -> int:
        return self.record.mb

    @property
    def token(self) -> int:
        """The fencing token: strictly increasing per pool, so a newer holder of the same
        memory always carries a larger token than any earlier one."""
        return self.record.token

    @property
    def priority(self) -> int:
        return self.record.priority

    @property
    def model_id(self) -> str | None:
        return self.record.model_id

    @property
    def released(self) -> bool:
        return self._released

    def __repr__(self) -> str:
        state = "released" if self._released else "lost" if not self.valid else "held"
        return f"<Lease {self.id} {self.mb} MiB on {self.pool} token={self.token} {state}>"

    # -- validity ---------------------------------------------------------------------

    @property
    def valid(self) -> bool:
        """True while the memory is ours for certain (not released, renewed in time)."""
        if self._released or self.lost.is_set():
            return False
        if self._clock() >= self._valid_until:
            self._fence("not renewed in time")
            return False
        return True

    def ensure_valid(self) -> None:
        if not self.valid:
            raise LeaseLost(f"lease {self.id} on {self.pool} is no longer held")

    def _fence(self, why: str) -> None:
        if not self.lost.is_set():
            log.warning("lease %s on %s lost: %s", self.id, self.pool, why)
            self.lost.set()

    # -- heartbeat --------------------------------------------------------------------

    def start_heartbeat(self, interval_s: float) -> None:
        """Renew every ``interval_s``. A timer, not a task, waits between renewals, so a
        short-lived lease costs no task at all."""
        self._interval_s = interval_s
        self._arm()

    def _arm(self) -> None:
        if not self._released:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._interval_s, self._due)
            self._arm_fence()

    def _arm_fence(self) -> None:
        """Mark the lease lost at the local deadline even if no renewal ever comes back
        (a hung store call, a stopped heartbeat): ``lost`` never waits for a reader."""
        if self._fence_timer is not None:
            self._fence_timer.cancel()
        delay = max(0.0, self._valid_until - self._clock())
        self._fence_timer = asyncio.get_running_loop().call_later(delay, self._fence_due)

    def _fence_due(self) -> None:
        self._fence_timer = None
        if not self._released and self._clock() >= self._valid_until:
            self._fence("not renewed in time")
        elif not self._released:
            self._arm_fence()

    def _due(self) -> None:
        self._timer = None
        if not self._released:
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._beat(), name=f"lease-heartbeat-{self.id}"
            )

    async def renew(self) -> None:
        """Renew now. Raises LeaseLost if the store no longer has it or it was fenced."""
        if not self.valid:
            raise LeaseLost(f"lease {self.id} on {self.pool} is no longer held")
        sent = self._clock()
        # An answer after the local deadline would not be trusted: do not wait longer.
        timer = asyncio.timeout(max(0.0, self._valid_until - sent))
        try:
            async with timer:
                result = await self._store.renew(self.pool, self.id, self.ttl_s)
        except LeaseLost:
            self._fence("the store no longer has it")
            raise
        except TimeoutError:
            if not timer.expired():
                raise
            self._fence("no renewal answer before the local deadline")
            raise LeaseLost(
                f"lease {self.id} on {self.pool} could not be renewed in time"
            ) from None
        if self._clock() >= self._valid_until:  # the answer came too late to trust
            self._fence("renewal answered after the local deadline")
            raise LeaseLost(f"lease {self.id} on {self.pool} was renewed too late")
        self._valid_until = sent + self._belief_s
        self.expires_at = result.expires_at
        if result.preempt:
            if not self.preempted.is_set():
                self.preempt_priority = result.preempt_priority
                self.preempt_reason = result.preempt_reason
                self.preempted.set()
            elif result.preempt_priority < self.preempt_priority:
                self.preempt_priority = result.preempt_priority
                self.preempt_reason = result.preempt_reason
                self.preempt_escalated.set()

    async def _beat(self) -> None:
        retry_s = max(0.01, self._interval_s / 4)
        while not self._released:
            if not self.valid:  # e.g. woke from SIGSTOP past the deadline
                return
            try:
                await self.renew()
            except LeaseLost:
                return
            except Exception as exc:  # store down, or anything unexpected: retry until fenced
                log.warning("lease %s: renewal failed, retrying: %s", self.id, exc)
                await asyncio.sleep(min(retry_s, max(0.0, self._valid_until - self._clock())))
                continue
            self._heartbeat = None
            self._arm()
            return

    # -- release ----------------------------------------------------------------------

    async def release(self) -> None:
        """Give the memory back (idempotent; safe under cancellation)."""
        if self._released:
            return
        self._released = True
        for timer in (self._timer, self._fence_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._fence_timer = None
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._on_release is not None:
            self._on_release(self)
        await _release_surely(self._store, self.pool, self.id)


async def _release_surely(store: LeaseStore, pool: str, lease_id: str) -> None:
    """Release, and if the caller is cancelled meanwhile, finish the release in the
    background (releasing is idempotent) before letting the cancellation through."""
    try:
        await store.release(pool, lease_id)
    except asyncio.CancelledError:
        release_in_background(store, pool, lease_id)
        raise
    except StoreUnavailable as exc:
        log.warning("release failed (the lease will expire on its own): %s", exc)


_background: set[asyncio.Task[Any]] = set()


def in_background(coro: Coroutine[Any, Any, object], what: str) -> asyncio.Task[None]:
    """Run ``coro`` without waiting for it; a failure is logged, never raised."""

    async def quietly() -> None:
        try:
            await coro
        except Exception as exc:
            log.info("%s failed: %s", what, exc)

    task = asyncio.get_running_loop().create_task(quietly())
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def release_in_background(store: LeaseStore, pool: str, lease_id: str) -> None:
    """Release ``lease_id`` without waiting (releasing is idempotent). For a grant whose
    caller was cancelled while the store was still committing it."""
    in_background(store.release(pool, lease_id), f"releasing lease {lease_id}")
