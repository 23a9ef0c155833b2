"""Arguments shared by the ledger commands (``gpu``, ``ram``)."""

from __future__ import annotations

import argparse
import time

from model_boss.leases import BossStatus, PoolStatus
from model_boss.priority import Priority

__all__ = ["add_ledger_args", "lease_rows", "pool_rows"]


def add_ledger_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger",
        metavar="URL",
        default=None,
        help="ledger URL (memory://, sqlite:///path, redis://host:port/db); default: "
        "MODEL_BOSS_REDIS_URL or REDIS_URL, else the embedded SQLite ledger",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _priority(value: int) -> str:
    try:
        return Priority(value).label
    except ValueError:
        return str(value)


def pool_rows(status: BossStatus) -> list[list[object]]:
    return [
        [p.pool, p.capacity_mb, p.used_mb, p.foreign_mb, p.free_mb, len(p.leases), len(p.waiters)]
        for p in status.pools
    ]


def lease_rows(pools: list[PoolStatus]) -> list[list[object]]:
    now = time.time()
    return [
        [
            lease.pool,
            lease.id,
            lease.mb,
            _priority(lease.priority),
            lease.holder,
            lease.model_id or "-",
            lease.token,
            f"{max(0.0, lease.expires_at - now):.1f}s",
            "yes" if lease.preempt else "",
        ]
        for pool in pools
        for lease in pool.leases
    ]


POOL_HEADERS = ["pool", "capacity_mb", "used_mb", "foreign_mb", "free_mb", "leases", "waiters"]
LEASE_HEADERS = ["pool", "lease", "mb", "priority", "holder", "model", "token", "ttl", "asked"]
