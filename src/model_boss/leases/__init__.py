"""The lease ledger: no two processes are ever promised the same megabytes.

See ``DESIGN.md`` beside this file for the grant rules and the fencing argument.
"""

from __future__ import annotations

from model_boss.leases._boss import BossStatus, GPUBoss, LeaseContext, RAMBoss
from model_boss.leases._lease import Lease
from model_boss.leases._memory import MemoryStore
from model_boss.leases._records import (
    GrantResult,
    LeaseRecord,
    LeaseRequest,
    PoolStatus,
    RenewResult,
    WaiterRecord,
)
from model_boss.leases._store import (
    LeaseStore,
    default_ledger_url,
    default_state_dir,
    open_store,
    redact_url,
)
from model_boss.leases._sync import SyncGPUBoss, SyncLease, SyncRAMBoss

__all__ = [
    "BossStatus",
    "GPUBoss",
    "GrantResult",
    "Lease",
    "LeaseContext",
    "LeaseRecord",
    "LeaseRequest",
    "LeaseStore",
    "MemoryStore",
    "PoolStatus",
    "RAMBoss",
    "RenewResult",
    "SyncGPUBoss",
    "SyncLease",
    "SyncRAMBoss",
    "WaiterRecord",
    "default_ledger_url",
    "default_state_dir",
    "open_store",
    "redact_url",
]
