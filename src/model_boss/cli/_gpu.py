"""``model-boss gpu status|drain|cleanup``."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from model_boss.cli._ledger_args import add_ledger_args, cleanup_command, show_pools
from model_boss.cli._table import print_json
from model_boss.leases import GPUBoss

__all__ = ["register"]


def register(groups: Any) -> None:
    gpu = groups.add_parser("gpu", help="GPU memory leases: status, drain, cleanup")
    verbs = gpu.add_subparsers(dest="verb", metavar="VERB", required=True)

    status = verbs.add_parser("status", help="capacity, used, free and live leases per GPU")
    add_ledger_args(status)
    status.set_defaults(handler=_status)

    drain = verbs.add_parser("drain", help="ask every holder (of one GPU, or all) to release")
    add_ledger_args(drain)
    drain.add_argument("--gpu", type=int, default=None, help="only this GPU index")
    drain.add_argument("--reason", default="drain requested from the CLI")
    drain.set_defaults(handler=_drain)

    cleanup = verbs.add_parser("cleanup", help="remove leases of dead local processes")
    add_ledger_args(cleanup)
    cleanup.set_defaults(handler=_cleanup)


def _boss(args: argparse.Namespace) -> GPUBoss:
    return GPUBoss(args.ledger)


def _status(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with _boss(args) as boss:
            gpus = [p for p in (await boss.status()).pools if ":gpu" in p.pool]
            if not boss.devices and not args.json:
                print("no GPUs on this host (none found by NVML, none in MODEL_BOSS_DEVICES)")
            show_pools(boss.url, gpus, args.json)
            return 0

    return asyncio.run(run())


def _drain(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with _boss(args) as boss:
            pool = boss.pool_of(args.gpu) if args.gpu is not None else None
            asked = await boss.drain(pool, args.reason)
            if args.json:
                print_json({"asked": asked, "pool": pool})
            else:
                print(f"asked {asked} lease holder(s) to release {pool or 'all pools'}")
            return 0

    return asyncio.run(run())


def _cleanup(args: argparse.Namespace) -> int:
    return cleanup_command(_boss(args), args.json)
