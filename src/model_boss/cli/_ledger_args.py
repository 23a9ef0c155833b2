"""Arguments shared by the ledger commands (``gpu``, ``ram``)."""

from __future__ import annotations

import argparse
import asyncio
import time

from model_boss.cli._table import print_json, render_table
from model_boss.leases import BossStatus, GPUBoss, PoolStatus, RAMBoss
from model_boss.priority import Priority

__all__ = ["add_ledger_args", "cleanup_command", "lease_rows", "pool_rows", "show_pools"]


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


def show_pools(url: str, pools: list[PoolStatus], as_json: bool) -> None:
    """Print pools and their leases as tables, or as JSON."""
    if as_json:
        print_json({"url": url, "pools": [p.to_dict() for p in pools]})
        return
    print(f"ledger: {url}")
    print(render_table(POOL_HEADERS, pool_rows(BossStatus(pools))))
    rows = lease_rows(pools)
    if rows:
        print()
        print(render_table(LEASE_HEADERS, rows))


def cleanup_command(boss: GPUBoss | RAMBoss, as_json: bool) -> int:
    """``cleanup``: remove leases of local processes that no longer exist."""

    async def run() -> int:
        async with boss:
            removed = await boss.cleanup()
        if as_json:
            print_json({"removed": removed})
        else:
            print(f"removed {removed} lease(s) of processes that no longer exist")
        return 0

    return asyncio.run(run())
