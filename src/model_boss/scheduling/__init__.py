"""The pure scheduling core: request queue, model pool, placement and eviction.

No I/O, no clock, no asyncio: :class:`Scheduler` takes events (time comes in on them as
``now``) and returns effects for its owner to carry out. The same code runs in the
coordinator and in :mod:`model_boss.sim`.
"""

from __future__ import annotations

from model_boss.scheduling._effects import (
    AbortRequest,
    AcquireLease,
    Dispatch,
    Effect,
    GrowLease,
    LoadRefused,
    Reject,
    ReleaseLease,
    StartSlot,
    StopSlot,
)
from model_boss.scheduling._events import (
    AdminLoad,
    AdminUnload,
    Event,
    LeaseDenied,
    LeaseGranted,
    LeaseGrown,
    PoolOutside,
    PreemptAsked,
    RequestArrived,
    RequestCancelled,
    RequestDone,
    SlotFailed,
    SlotReady,
    SlotStopped,
    SlotUsage,
    Tick,
)
from model_boss.scheduling._eviction import VictimCandidate, keep_value, victims
from model_boss.scheduling._placement import Placement, PoolView, place
from model_boss.scheduling._pool import MemoryPool, ModelPool, Slot, SlotState
from model_boss.scheduling._queue import CooldownGate, QueuedRequest, RequestQueue
from model_boss.scheduling._scheduler import Scheduler
from model_boss.scheduling._types import (
    DEFAULT_STAY_WARM_S,
    SPLITTABLE_BACKENDS,
    ModelProfile,
    PoolSpec,
    RequestId,
    SchedulerConfig,
    SlotId,
)

__all__ = [
    "DEFAULT_STAY_WARM_S",
    "SPLITTABLE_BACKENDS",
    "AbortRequest",
    "AcquireLease",
    "AdminLoad",
    "AdminUnload",
    "CooldownGate",
    "Dispatch",
    "Effect",
    "Event",
    "GrowLease",
    "LeaseDenied",
    "LeaseGranted",
    "LeaseGrown",
    "LoadRefused",
    "MemoryPool",
    "ModelPool",
    "ModelProfile",
    "Placement",
    "PoolOutside",
    "PoolSpec",
    "PoolView",
    "PreemptAsked",
    "QueuedRequest",
    "Reject",
    "ReleaseLease",
    "RequestArrived",
    "RequestCancelled",
    "RequestDone",
    "RequestId",
    "RequestQueue",
    "Scheduler",
    "SchedulerConfig",
    "Slot",
    "SlotFailed",
    "SlotId",
    "SlotReady",
    "SlotState",
    "SlotStopped",
    "SlotUsage",
    "StartSlot",
    "StopSlot",
    "Tick",
    "VictimCandidate",
    "keep_value",
    "place",
    "victims",
]
