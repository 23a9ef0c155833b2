"""IdleResourceManager: call ``on_idle`` once nothing used a resource for ``timeout_s``.

The resource is *busy* while any ``async with manager.busy():`` block runs, and idle
otherwise; the idle clock starts when the last busy block ends (or at ``start()``).
``touch()`` restarts the clock without a busy block. One timer, re-armed on each change,
so an idle resource costs no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["IdleResourceManager"]

log = logging.getLogger("model_boss.loaders")

DEFAULT_IDLE_TIMEOUT_S = 300.0


class IdleResourceManager:
    """Runs ``on_idle()`` after ``timeout_s`` without use (default 5 minutes).

    ``on_idle`` runs at most once per idle period: a later use re-arms the timer.
    ``timeout_s = inf`` never calls it. ``wait_idle()`` waits until no busy block runs.
    """

    def __init__(
        self,
        on_idle: Callable[[], Awaitable[None]],
        timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self._on_idle = on_idle
        self._clock = clock
        self._busy = 0
        self.last_used = clock()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._not_busy = asyncio.Event()
        self._not_busy.set()
        self._running = False

    @property
    def in_use(self) -> int:
        """How many busy blocks run now."""
        return self._busy

    @property
    def idle_s(self) -> float:
        """Seconds since the last use ended (0 while busy)."""
        return 0.0 if self._busy else max(0.0, self._clock() - self.last_used)

    def start(self) -> None:
        self._running = True
        self.touch()

    async def stop(self) -> None:
        self._running = False
        self._cancel_timer()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def touch(self) -> None:
        """Count now as a use: the idle clock starts again."""
        self.last_used = self._clock()
        self._arm()

    @contextlib.asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        """The resource is in use for the duration of the block."""
        self._busy += 1
        self._not_busy.clear()
        self._cancel_timer()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._not_busy.set()
            self.touch()

    async def wait_idle(self) -> None:
        """Return once no busy block runs."""
        await self._not_busy.wait()

    def _arm(self) -> None:
        self._cancel_timer()
        if not self._running or self._busy or math.isinf(self.timeout_s):
            return
        delay = max(0.0, self.last_used + self.timeout_s - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._due)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        self._timer = None
        if not self._running or self._busy:
            return
        if self._clock() - self.last_used < self.timeout_s:  # touched since: wait the rest
            self._arm()
            return
        # Not re-armed: once per idle period. The next use (touch, busy) starts a new one.
        self._task = asyncio.get_running_loop().create_task(self._fire())

    async def _fire(self) -> None:
        try:
            await self._on_idle()
        except Exception:
            log.exception("on_idle callback failed")
