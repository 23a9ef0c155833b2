"""Effects: what the scheduler asks its owner (the engine, or the simulator) to do."""

from __future__ import annotations

from dataclasses import dataclass

from model_boss.scheduling._types import RequestId, SlotId

__all__ = [
    "AbortRequest",
    "AcquireLease",
    "Dispatch",
    "Effect",
    "GrowLease",
    "LoadRefused",
    "Reject",
    "ReleaseLease",
    "StartSlot",
    "StopSlot",
]


@dataclass(frozen=True, slots=True)
class AcquireLease:
    """Take ``mb_per_pool`` MB on every pool of ``pools`` (all or nothing) for ``slot_id``.

    Answer with ``LeaseGranted`` or ``LeaseDenied``.
    """

    slot_id: SlotId
    model: str
    pools: tuple[str, ...]
    mb_per_pool: int
    priority: int


@dataclass(frozen=True, slots=True)
class StartSlot:
    """Start a backend for ``model`` on ``pools``; answer with ``SlotReady`` or ``SlotFailed``."""

    slot_id: SlotId
    model: str
    pools: tuple[str, ...]
    mb_per_pool: int


@dataclass(frozen=True, slots=True)
class StopSlot:
    """Stop the backend of ``slot_id`` (it has no running request); answer with ``SlotStopped``.

    ``evicted``: it goes to make room (for another model, or a more urgent lease holder),
    not because it idled out or an admin unloaded it. ``error``: it broke a rule (it used
    more memory than its lease holds); ``reason`` says how, for the log and the status.
    """

    slot_id: SlotId
    model: str
    reason: str
    evicted: bool = False
    error: bool = False


@dataclass(frozen=True, slots=True)
class ReleaseLease:
    """Give the lease of ``slot_id`` back to the ledger."""

    slot_id: SlotId


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send request ``request_id`` to the backend of ``slot_id``; answer with ``RequestDone``."""

    request_id: RequestId
    slot_id: SlotId
    model: str


@dataclass(frozen=True, slots=True)
class AbortRequest:
    """Stop the running request ``request_id`` on ``slot_id``: it was cancelled, or (with
    ``reason``) its slot is being stopped and the request fails with ``reason``/``code``."""

    request_id: RequestId
    slot_id: SlotId
    reason: str = ""
    code: int = 503


@dataclass(frozen=True, slots=True)
class GrowLease:
    """Take ``mb`` more on ``pool`` for ``slot_id`` if the ledger grants it at once (no
    waiting, no preemption); keep it with the slot's lease. Answer with ``LeaseGrown``."""

    slot_id: SlotId
    model: str
    pool: str
    mb: int
    priority: int = 10


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer ``request_id`` with an error; ``code`` is an HTTP-like status (429, 404, 503...).

    ``retry_after_s``: when the client may usefully try again (a Retry-After), if the
    scheduler has an opinion; None leaves it to the owner."""

    request_id: RequestId
    reason: str
    code: int = 503
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class LoadRefused:
    """An ``AdminLoad`` cannot place a single replica now (with some placed, it goes on with
    those)."""

    model: str
    reason: str


Effect = (
    AcquireLease
    | StartSlot
    | StopSlot
    | ReleaseLease
    | Dispatch
    | AbortRequest
    | Reject
    | LoadRefused
    | GrowLease
)
