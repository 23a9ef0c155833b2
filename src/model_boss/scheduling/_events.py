"""Events: everything the scheduler learns about the world. Time always comes in as ``now``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from model_boss.scheduling._types import RequestId, SlotId

__all__ = [
    "AdminLoad",
    "AdminUnload",
    "Event",
    "LeaseDenied",
    "LeaseGranted",
    "LeaseGrown",
    "PoolOutside",
    "PreemptAsked",
    "RequestArrived",
    "RequestCancelled",
    "RequestDone",
    "SlotFailed",
    "SlotReady",
    "SlotStopped",
    "SlotUsage",
    "Tick",
]


@dataclass(frozen=True, slots=True)
class RequestArrived:
    """A client request for ``model``; ``priority`` is numeric (see ``parse_priority``)."""

    now: float
    request_id: RequestId
    model: str
    priority: int = 10
    client: str = "anonymous"
    stay_warm_s: float | None = None
    cooldown_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RequestCancelled:
    """The client went away: drop the request if queued, free its place if running."""

    now: float
    request_id: RequestId


@dataclass(frozen=True, slots=True)
class RequestDone:
    """A dispatched request finished (successfully or not) and its slot has room again."""

    now: float
    request_id: RequestId
    ok: bool = True


@dataclass(frozen=True, slots=True)
class LeaseGranted:
    """The ledger granted the memory asked for by ``AcquireLease(slot_id)``."""

    now: float
    slot_id: SlotId
    token: int = 0


@dataclass(frozen=True, slots=True)
class LeaseDenied:
    """The ledger could not grant ``AcquireLease(slot_id)`` (other holders use the memory)."""

    now: float
    slot_id: SlotId
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SlotReady:
    """The backend of ``slot_id`` answers; ``footprint_mb`` is its measured memory, if known."""

    now: float
    slot_id: SlotId
    footprint_mb: int | None = None


@dataclass(frozen=True, slots=True)
class SlotFailed:
    """The backend of ``slot_id`` failed to start or died."""

    now: float
    slot_id: SlotId
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SlotStopped:
    """The backend of ``slot_id`` has exited after ``StopSlot``; its memory is free."""

    now: float
    slot_id: SlotId


@dataclass(frozen=True, slots=True)
class SlotUsage:
    """What the backend of ``slot_id`` really uses now: MB per pool of the slot (the usage
    watch measures its process tree every few seconds; pools it does not report count 0)."""

    now: float
    slot_id: SlotId
    used_mb: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LeaseGrown:
    """The ledger's answer to ``GrowLease``: ``granted`` at once, or refused (no waiting)."""

    now: float
    slot_id: SlotId
    pool: str
    mb: int
    granted: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PoolOutside:
    """``mb`` of ``pool`` are held outside this scheduler: other holders' leases and memory
    the ledger counts as foreign. Placement leaves that much alone until told otherwise
    (0: nothing is held outside). The owner sends it when the ledger shows a change."""

    now: float
    pool: str
    mb: int


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed; send one at ``Scheduler.next_wakeup()`` (or periodically)."""

    now: float


@dataclass(frozen=True, slots=True)
class AdminLoad:
    """Load ``model`` now (``replicas`` slots, default the manifest's); keep it until unloaded."""

    now: float
    model: str
    replicas: int | None = None


@dataclass(frozen=True, slots=True)
class AdminUnload:
    """Unload every slot of ``model`` once its running requests finish (pinned ones too)."""

    now: float
    model: str


@dataclass(frozen=True, slots=True)
class PreemptAsked:
    """A waiter of ``priority`` at the ledger asks for ``mb`` back on ``pool`` (0: a drain)."""

    now: float
    pool: str
    mb: int
    priority: int


Event = (
    RequestArrived
    | RequestCancelled
    | RequestDone
    | LeaseGranted
    | LeaseDenied
    | SlotReady
    | SlotFailed
    | SlotStopped
    | Tick
    | AdminLoad
    | AdminUnload
    | PreemptAsked
    | SlotUsage
    | LeaseGrown
    | PoolOutside
)
