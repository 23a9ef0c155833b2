"""model-boss: share GPUs and RAM between every program on a machine for ML inference."""

from __future__ import annotations

from model_boss._version import __version__
from model_boss.client import InferenceClient, ModelBoss, SyncInferenceClient, SyncModelBoss
from model_boss.devices import Device
from model_boss.errors import (
    AcquireTimeout,
    ConfigError,
    InvalidLeaseRequest,
    LeaseError,
    LeaseLost,
    ModelBossError,
    RequestTooLarge,
    StoreUnavailable,
    UnknownDevice,
)
from model_boss.leases import GPUBoss, Lease, RAMBoss, SyncGPUBoss, SyncRAMBoss
from model_boss.priority import Priority, parse_priority

__all__ = [
    "AcquireTimeout",
    "ConfigError",
    "Device",
    "GPUBoss",
    "InferenceClient",
    "InvalidLeaseRequest",
    "Lease",
    "LeaseError",
    "LeaseLost",
    "ModelBoss",
    "ModelBossError",
    "Priority",
    "RAMBoss",
    "RequestTooLarge",
    "StoreUnavailable",
    "SyncGPUBoss",
    "SyncInferenceClient",
    "SyncModelBoss",
    "SyncRAMBoss",
    "UnknownDevice",
    "__version__",
    "parse_priority",
]
