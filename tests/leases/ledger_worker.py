"""A lease holder in its own OS process, for the multi-process tests.

python -m tests.leases.ledger_worker churn URL SECONDS SEED
python -m tests.leases.ledger_worker hold URL MB TTL
"""

from __future__ import annotations

import asyncio
import random
import sys
import time

from model_boss import AcquireTimeout, Device, GPUBoss

CAPACITY_MB = 10_000
DEVICES = [Device(0, CAPACITY_MB)]


async def churn(url: str, seconds: float, seed: int) -> None:
    rng = random.Random(seed)
    grants = timeouts = 0
    async with GPUBoss(url, DEVICES, host="mp", ttl_s=5) as boss:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            mb = rng.randint(500, 6000)
            try:
                async with boss.acquire(vram_mb=mb, priority=rng.choice([5, 10, 20]), timeout=2):
                    grants += 1
                    await asyncio.sleep(rng.random() * 0.03)
            except AcquireTimeout:
                timeouts += 1
    print(f"grants={grants} timeouts={timeouts}", flush=True)


async def hold(url: str, mb: int, ttl: float) -> None:
    async with GPUBoss(url, DEVICES, host="mp", ttl_s=ttl) as boss:
        lease = await boss.acquire(vram_mb=mb, timeout=10)
        print(f"held {lease.id} {lease.token}", flush=True)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if not lease.valid:
                print("fenced", flush=True)
                return
            await asyncio.sleep(0.02)
        print("still valid", flush=True)


def main(argv: list[str]) -> None:
    mode, url = argv[0], argv[1]
    if mode == "churn":
        asyncio.run(churn(url, float(argv[2]), int(argv[3])))
    elif mode == "hold":
        asyncio.run(hold(url, int(argv[2]), float(argv[3])))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
