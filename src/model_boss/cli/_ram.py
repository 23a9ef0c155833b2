"""``model-boss ram status|analyze|clear|cleanup``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
from pathlib import Path
from typing import Any

from model_boss.cli._ledger_args import add_ledger_args, cleanup_command, show_pools
from model_boss.cli._table import print_json, render_table
from model_boss.devices import MemoryAnalyzer, ProcessMonitor
from model_boss.leases import RAMBoss

__all__ = ["register"]

DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def register(groups: Any) -> None:
    ram = groups.add_parser("ram", help="host RAM: leases, pressure analysis, release, cleanup")
    verbs = ram.add_subparsers(dest="verb", metavar="VERB", required=True)

    status = verbs.add_parser("status", help="RAM pool capacity, used, free and live leases")
    add_ledger_args(status)
    status.set_defaults(handler=_status)

    analyze = verbs.add_parser("analyze", help="memory pressure and the biggest processes")
    analyze.add_argument("--json", action="store_true")
    analyze.add_argument("--top", type=int, default=5, help="how many processes to list")
    analyze.set_defaults(handler=_analyze)

    clear = verbs.add_parser(
        "clear",
        help="ask the RAM pool's lease holders to release (idle models unload); "
        "with --drop-page-cache, as root, drop the kernel's page cache",
    )
    add_ledger_args(clear)
    clear.add_argument("--reason", default="ram clear requested from the CLI")
    clear.add_argument(
        "--drop-page-cache",
        action="store_true",
        help="also drop the kernel's page cache (needs root; it refills on demand)",
    )
    clear.set_defaults(handler=_clear)

    cleanup = verbs.add_parser("cleanup", help="remove RAM leases of dead local processes")
    add_ledger_args(cleanup)
    cleanup.set_defaults(handler=_cleanup)


def _status(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with RAMBoss(args.ledger) as boss:
            pools = [p for p in (await boss.status()).pools if p.pool == boss.pool]
            show_pools(boss.url, pools, args.json)
            return 0

    return asyncio.run(run())


def _analyze(args: argparse.Namespace) -> int:
    analysis = MemoryAnalyzer().analyze()
    top = ProcessMonitor().top(args.top)
    snap = analysis.snapshot
    if args.json:
        print_json(
            {
                "pressure": analysis.pressure.value,
                "recommendation": analysis.recommendation,
                "reclaimable_mb": analysis.reclaimable_mb,
                "memory": {**dataclasses.asdict(snap), "used_mb": snap.used_mb},
                "top_processes": [dataclasses.asdict(p) for p in top],
            }
        )
        return 0
    print(
        render_table(
            ["total_mb", "used_mb", "available_mb", "cached_mb", "swap_used_mb", "pressure"],
            [
                [
                    snap.total_mb,
                    snap.used_mb,
                    snap.available_mb,
                    snap.cached_mb,
                    snap.swap_total_mb - snap.swap_free_mb,
                    analysis.pressure.value,
                ]
            ],
        )
    )
    print(f"advice: {analysis.recommendation}")
    print()
    print(
        render_table(
            ["pid", "name", "rss_mb", "mem_%"],
            [[p.pid, p.name, p.rss_mb, p.percent] for p in top],
        )
    )
    return 0


def _clear(args: argparse.Namespace) -> int:
    """Ask every holder of a RAM lease on the ledger to give it back, as ``gpu drain``
    does for a GPU: each decides (the coordinator unloads the models it holds idle, a
    program sees ``lease.preempted``). Memory held outside the ledger is not touched."""

    async def run() -> int:
        async with RAMBoss(args.ledger) as boss:
            before = MemoryAnalyzer().snapshot().available_mb
            asked = await boss.drain(boss.pool, args.reason)
            page_cache = _drop_page_cache() if args.drop_page_cache else None
            out = {"asked": asked, "pool": boss.pool, "available_mb": before}
            if page_cache is not None:
                out["page_cache"] = page_cache
            if args.json:
                print_json(out)
            else:
                print(f"asked {asked} lease holder(s) to release {boss.pool}")
                if page_cache is not None:
                    print(f"page cache: {page_cache}")
                print(f"available now: {before} MiB (holders release on their own)")
            return 1 if page_cache == _NEEDS_ROOT else 0

    return asyncio.run(run())


_NEEDS_ROOT = "kept: dropping it needs root"


def _drop_page_cache() -> str:
    if os.geteuid() != 0:
        return _NEEDS_ROOT
    os.sync()
    DROP_CACHES.write_text("1\n")
    return "dropped"


def _cleanup(args: argparse.Namespace) -> int:
    return cleanup_command(RAMBoss(args.ledger), args.json)
