"""The ``LeaseStore`` protocol, and opening a store from a URL.

``memory://[name]``       one process (tests); stores with the same name share a ledger
``sqlite:///path/to.db``  every process on one host; the embedded default
``redis://host:port/db``  any number of hosts (Redis or Valkey); ``rediss://`` for TLS,
``redis+sentinel://h1:26379,h2:26379/service/db`` through Sentinel (see ``_redis_url.py``)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from model_boss.errors import InvalidLeaseRequest
from model_boss.leases._records import GrantResult, LeaseRequest, PoolStatus, RenewResult
from model_boss.leases._url import redact_url

__all__ = ["LeaseStore", "default_ledger_url", "default_state_dir", "open_store", "redact_url"]


class LeaseStore(Protocol):
    """Atomic operations on the ledger. Every method is one atomic step in its store.

    Times (``granted_at``, ``expires_at``) are seconds on the store's clock.
    Unreachable stores raise :class:`~model_boss.errors.StoreUnavailable`.
    """

    @property
    def url(self) -> str:
        """The store's URL with any password removed."""
        ...

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def register_pool(self, pool: str, capacity_mb: int) -> None:
        """Create the pool, or set its capacity if it exists."""
        ...

    async def set_foreign(self, pool: str, mb: int) -> None:
        """Memory in the pool used outside the ledger (NVML-observed), never granted."""
        ...

    async def grant(self, req: LeaseRequest) -> GrantResult:
        """Purge expired leases and waiters, then grant if the request fits in what is
        free after the waiters queued ahead of it; otherwise queue it if ``req.wait``."""
        ...

    async def renew(self, pool: str, lease_id: str, ttl_s: float) -> RenewResult:
        """Extend a live lease; raises :class:`~model_boss.errors.LeaseLost` if it expired
        or is gone (an expired lease can never be renewed)."""
        ...

    async def release(self, pool: str, lease_id: str) -> bool:
        """Give the memory back. False if the lease was already gone."""
        ...

    async def withdraw(self, pool: str, waiter_id: str) -> None:
        """Leave the pool's wait queue."""
        ...

    async def request_preemption(
        self, pool: str, need_mb: int, priority: int, reason: str
    ) -> list[str]:
        """Ask less urgent holders to give back at least ``need_mb``; returns the ids asked."""
        ...

    async def drain(self, pool: str | None, reason: str) -> int:
        """Ask every holder (of one pool, or all) to release; returns how many were asked."""
        ...

    async def pools(self) -> list[PoolStatus]:
        """Every pool with its live leases and waiters (expired ones purged first)."""
        ...

    async def now(self) -> float:
        """The store's clock."""
        ...


def default_state_dir() -> Path:
    explicit = os.environ.get("MODEL_BOSS_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "model-boss"


def default_ledger_url() -> str:
    """``MODEL_BOSS_LEDGER_URL``, else ``MODEL_BOSS_REDIS_URL``, else ``REDIS_URL``, else
    the embedded SQLite ledger in the user's state directory."""
    for name in ("MODEL_BOSS_LEDGER_URL", "MODEL_BOSS_REDIS_URL", "REDIS_URL"):
        value = os.environ.get(name)
        if value:
            return value
    return f"sqlite:///{default_state_dir() / 'ledger.db'}"


REDIS_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "valkey",
    "valkeys",
    "redis+sentinel",
    "rediss+sentinel",
    "valkey+sentinel",
    "valkeys+sentinel",
)


def open_store(url: str | None = None, *, prefix: str | None = None) -> LeaseStore:
    """The store for ``url`` (default: :func:`default_ledger_url`). Not yet connected."""
    target = url or default_ledger_url()
    scheme = urlsplit(target).scheme.lower()
    if scheme == "memory":
        from model_boss.leases._memory import MemoryStore

        return MemoryStore.named(urlsplit(target).netloc or "default")
    if scheme == "sqlite":
        from model_boss.leases._sqlite import SQLiteStore

        path = target[len("sqlite://") :]
        if path.startswith("/") and path[1:2] == "/":  # sqlite:////abs -> /abs
            path = path[1:]
        if not path or path == "/":
            raise InvalidLeaseRequest(f"sqlite URL needs a file path: {target!r}")
        return SQLiteStore(Path(path))
    if scheme in REDIS_SCHEMES:
        from model_boss.leases._redis import RedisStore

        return RedisStore(target, prefix=prefix)
    raise InvalidLeaseRequest(
        f"unknown ledger URL {redact_url(target)!r}: expected memory://, sqlite:///path "
        "or redis://host:port/db"
    )
