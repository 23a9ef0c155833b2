"""``model-boss ram status|analyze|clear|cleanup``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from typing import Any

from model_boss.cli._ledger_args import add_ledger_args, cleanup_command, show_pools
from model_boss.cli._table import print_json, render_table
from model_boss.devices import CacheManager, CleanupMode, MemoryAnalyzer, ProcessMonitor
from model_boss.leases import RAMBoss

__all__ = ["register"]


def register(groups: Any) -> None:
    ram = groups.add_parser("ram", help="host RAM: leases, pressure analysis, cache cleanup")
    verbs = ram.add_subparsers(dest="verb", metavar="VERB", required=True)

    status = verbs.add_parser("status", help="RAM pool capacity, used, free and live leases")
    add_ledger_args(status)
    status.set_defaults(handler=_status)

    analyze = verbs.add_parser("analyze", help="memory pressure and the biggest processes")
    analyze.add_argument("--json", action="store_true")
    analyze.add_argument("--top", type=int, default=5, help="how many processes to list")
    analyze.set_defaults(handler=_analyze)

    clear = verbs.add_parser("clear", help="free memory: gc, framework caches, page cache")
    clear.add_argument("mode", nargs="?", default="auto", choices=[m.value for m in CleanupMode])
    clear.add_argument(
        "--drop-page-cache",
        action="store_true",
        help="with aggressive (or auto under critical pressure): drop the page cache (root)",
    )
    clear.add_argument("--json", action="store_true")
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
    report = CacheManager().cleanup(args.mode, drop_page_cache=args.drop_page_cache)
    if args.json:
        print_json({**dataclasses.asdict(report), "mode": report.mode.value})
        return 0
    print(f"mode: {report.mode.value}")
    for action in report.actions:
        print(f"  - {action}")
    print(
        f"available: {report.available_before_mb} -> {report.available_after_mb} MiB "
        f"(freed {report.freed_mb} MiB)"
    )
    return 0


def _cleanup(args: argparse.Namespace) -> int:
    return cleanup_command(RAMBoss(args.ledger), args.json)
