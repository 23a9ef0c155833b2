"""Another program on the ledger: holds one lease in its own OS process until killed.

python -m tests.e2e.lease_holder URL ram|gpu CAPACITY_MB MB

Prints ``held <lease id> <MB>`` once granted, ``fenced`` if the lease is ever lost, and
``still valid`` when it is terminated with its lease intact.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from model_boss import Device, GPUBoss, RAMBoss

HOST = "t"


async def hold(url: str, kind: str, capacity_mb: int, mb: int) -> None:
    boss: GPUBoss | RAMBoss
    if kind == "gpu":
        boss = GPUBoss(url, [Device(0, capacity_mb)], host=HOST, holder="other-program")
    else:
        boss = RAMBoss(url, total_mb=capacity_mb, host=HOST, holder="other-program")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with boss:
        if isinstance(boss, GPUBoss):
            lease = await boss.acquire(vram_mb=mb, gpu=0, timeout=10, preempt=False)
        else:
            lease = await boss.acquire(ram_mb=mb, timeout=10, preempt=False)
        print(f"held {lease.id} {lease.mb}", flush=True)
        lost = asyncio.ensure_future(lease.lost.wait())
        done = asyncio.ensure_future(stop.wait())
        await asyncio.wait({lost, done}, return_when=asyncio.FIRST_COMPLETED)
        print("fenced" if lost.done() else "still valid", flush=True)
        lost.cancel()
        done.cancel()


if __name__ == "__main__":
    url, kind, capacity, mb = sys.argv[1:5]
    asyncio.run(hold(url, kind, int(capacity), int(mb)))
