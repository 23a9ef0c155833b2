"""One lease holder process of the fault suite: takes, holds and gives back random leases
for SECONDS, writing what it believes to OUT (one line per event, flushed at once, so a
killed holder leaves its record behind).

    python -m tests.faults.holder URL OUT SECONDS SEED TTL

Lines (times are CLOCK_MONOTONIC, the same clock in every process of the host):
    try T0 TIMEOUT                      an acquire starts
    grant ID TOKEN MB SENT GOT T0       granted; believed from GOT
    timeout|unavailable|error T0 T1 TIMEOUT WHY
    end ID T WHY                        belief ended at T (released, or lost)
    done
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from typing import TextIO

from model_boss import Device, GPUBoss
from model_boss.errors import AcquireTimeout, LeaseError, StoreUnavailable
from model_boss.leases import Lease

CAPACITY_MB = 10_000
HOST = "faults"
POOL = f"{HOST}:gpu0"


def _emit(out: TextIO, *parts: object) -> None:
    out.write(" ".join(str(p) for p in parts) + "\n")
    out.flush()


async def _hold(out: TextIO, lease: Lease, seconds: float) -> None:
    """Use the memory for ``seconds`` while the lease is valid; record when belief ended."""
    until = time.monotonic() + seconds
    while time.monotonic() < until and lease.valid:
        await asyncio.sleep(0.01)
    if lease.valid:
        _emit(out, "end", lease.id, repr(time.monotonic()), "released")
        await lease.release()
    else:
        # Believed until the local deadline at the latest (a stopped process believes
        # nothing past it), or until it heard that the store lost the lease.
        ended = min(time.monotonic(), lease._valid_until)
        _emit(out, "end", lease.id, repr(ended), "lost")
        await lease.release()


async def run(url: str, out: TextIO, seconds: float, seed: int, ttl: float) -> None:
    rng = random.Random(seed)
    boss = GPUBoss(url, [Device(0, CAPACITY_MB)], host=HOST, ttl_s=ttl, poll_s=0.02)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        mb = rng.randint(500, 6000)
        wait = round(rng.uniform(0.5, 3.0), 2)
        t0 = time.monotonic()
        _emit(out, "try", repr(t0), wait)
        try:
            lease = await boss.acquire(
                vram_mb=mb, priority=rng.choice([5, 10, 20]), timeout=wait, preempt=False
            )
        except (AcquireTimeout, StoreUnavailable, LeaseError) as exc:
            kind = {AcquireTimeout: "timeout", StoreUnavailable: "unavailable"}.get(
                type(exc), "error"
            )
            why = str(exc).replace("\n", " ")[:200]
            _emit(out, kind, repr(t0), repr(time.monotonic()), wait, why)
            await asyncio.sleep(0.05)
            continue
        got = time.monotonic()
        sent = lease._valid_until - lease._belief_s
        _emit(out, "grant", lease.id, lease.token, mb, repr(sent), repr(got), repr(t0))
        await _hold(out, lease, rng.uniform(0.1, 2.5))
        await asyncio.sleep(rng.uniform(0, 0.2))
    with contextlib.suppress(TimeoutError, LeaseError):
        await asyncio.wait_for(boss.close(), 5)
    _emit(out, "done")


def main(argv: list[str]) -> None:
    url, path, seconds, seed, ttl = argv
    with open(path, "w") as out:
        asyncio.run(run(url, out, float(seconds), int(seed), float(ttl)))


if __name__ == "__main__":
    main(sys.argv[1:])
