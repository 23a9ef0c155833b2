"""Plain records that cross the store boundary (same shape in every store)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "GrantResult",
    "LeaseRecord",
    "LeaseRequest",
    "PoolStatus",
    "RenewResult",
    "WaiterRecord",
]


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """One attempt to take ``mb`` from ``pool``.

    ``lease_id`` doubles as the waiter id: a request that is denied with ``wait=True``
    is queued under that id, and its place in the queue is kept across attempts.
    """

    pool: str
    lease_id: str
    mb: int
    priority: int
    holder: str
    pid: int
    host: str
    model_id: str | None
    ttl_s: float
    wait: bool = False
    waiter_ttl_s: float = 5.0
    #: Waiters age: priority ``p`` queues as if it came ``(p - 1) * this`` seconds later.
    #: Every holder should use the same value (the default matches the coordinator's queue).
    aging_s_per_level: float = 10.0
    #: When process ``pid`` started (psutil's create_time), so a reused pid is not
    #: mistaken for the holder; 0: unknown.
    pid_started: float = 0.0


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    id: str
    pool: str
    mb: int
    priority: int
    holder: str
    pid: int
    host: str
    model_id: str | None
    token: int
    granted_at: float
    expires_at: float
    preempt: bool = False
    preempt_reason: str = ""
    #: The priority of whoever asked for the memory back; 0 for a drain (asks everyone).
    preempt_priority: int = 0
    pid_started: float = 0.0  # when process ``pid`` started; 0: unknown

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LeaseRecord:
        model_id = data.get("model_id")
        return cls(
            id=str(data["id"]),
            pool=str(data["pool"]),
            mb=int(data["mb"]),
            priority=int(data["priority"]),
            holder=str(data["holder"]),
            pid=int(data["pid"]),
            host=str(data["host"]),
            model_id=None if model_id in (None, "") else str(model_id),
            token=int(data["token"]),
            granted_at=float(data["granted_at"]),
            expires_at=float(data["expires_at"]),
            preempt=bool(data.get("preempt", False)),
            preempt_reason=str(data.get("preempt_reason") or ""),
            preempt_priority=int(data.get("preempt_priority") or 0),
            pid_started=float(data.get("pid_started") or 0.0),
        )


@dataclass(frozen=True, slots=True)
class WaiterRecord:
    id: str
    pool: str
    mb: int
    priority: int
    seq: int
    holder: str
    expires_at: float
    since: float = 0.0  # when it queued, on the store's clock (0: unknown, counts as now)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class GrantResult:
    """``lease`` is set when granted. ``free_mb`` is what the pool had free before this
    grant; ``ahead_mb`` is memory claimed by waiters queued ahead of the request.
    ``retry_after_s`` > 0: the store lost its state and grants nothing for that long
    (every lease someone may still believe held must first have failed to renew)."""

    lease: LeaseRecord | None
    free_mb: int
    ahead_mb: int
    retry_after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RenewResult:
    expires_at: float
    preempt: bool
    preempt_reason: str
    preempt_priority: int = 0  # the asker's priority; 0 for a drain


@dataclass(frozen=True, slots=True)
class PoolStatus:
    pool: str
    capacity_mb: int
    used_mb: int
    foreign_mb: int
    leases: list[LeaseRecord] = field(default_factory=list)
    waiters: list[WaiterRecord] = field(default_factory=list)

    @property
    def free_mb(self) -> int:
        return self.capacity_mb - self.used_mb - self.foreign_mb

    def to_dict(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "capacity_mb": self.capacity_mb,
            "used_mb": self.used_mb,
            "foreign_mb": self.foreign_mb,
            "free_mb": self.free_mb,
            "leases": [lease.to_dict() for lease in self.leases],
            "waiters": [w.to_dict() for w in self.waiters],
        }
