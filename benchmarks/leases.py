"""Lease ledger throughput: grant+release round trips per second, and latency.

    python benchmarks/leases.py [--seconds 3] [--procs 1,4] [--redis URL] [--json]

Each process loops ``async with boss.acquire(vram_mb=1): pass`` through the public
GPUBoss API (one grant and one release per round trip) against a Redis ledger (a
private Valkey started here unless ``--redis`` is given) and the embedded SQLite
ledger, and the same Redis store over redis-py (with hiredis when installed) instead of
our own RESP client (``redis-py`` rows: the maintained-client comparison). In the same
run it measures a baseline with the same processes: the cheapest
write round trip each store can do (Redis: a plain SET + DEL with redis-py, the usual
Python client; SQLite: two one-row BEGIN IMMEDIATE transactions with sqlite3), and
prints our rate as a ratio of it.
With ``--json`` the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from model_boss import Device, GPUBoss
from model_boss.leases._redis import RedisStore
from model_boss.leases._resp import RespError
from model_boss.testing import ValkeyServer

TARGETS = {"redis": 5000.0, "sqlite": 1000.0}  # grant+release/s from 4 processes


@dataclass
class Row:
    store: str
    procs: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    baseline_ops_per_s: float
    ratio_to_baseline: float
    target_ops_per_s: float | None
    meets_target: bool | None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _RedisPyConnection:
    """redis-py (with hiredis when installed) behind the RESP client's ``call`` interface,
    so the same RedisStore and Lua scripts run over the maintained client."""

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(url.split("?")[0])

    async def call(self, *args: object) -> Any:
        try:
            return await self.client.execute_command(*args)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            raise RespError(str(exc)) from exc

    def reset(self) -> None:
        pass

    async def close(self) -> None:
        await self.client.aclose()


async def _leases(url: str, start_at: float, seconds: float, client: str = "resp") -> list[float]:
    async with GPUBoss(url, [Device(0, 10**9)], host="bench", ttl_s=30) as boss:
        if client == "redis-py":
            store = boss.store
            assert isinstance(store, RedisStore)
            await store.close()
            store._conn = _RedisPyConnection(url)  # type: ignore[assignment]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        lat: list[float] = []
        end = time.perf_counter() + seconds
        while (t0 := time.perf_counter()) < end:
            async with boss.acquire(vram_mb=1, timeout=10):
                pass
            lat.append(time.perf_counter() - t0)
        return lat


async def _redis_baseline(url: str, start_at: float, seconds: float) -> list[float]:
    client = aioredis.Redis.from_url(url)
    key = f"bench:baseline:{os.getpid()}"
    await client.ping()
    await asyncio.sleep(max(0.0, start_at - time.time()))
    lat: list[float] = []
    end = time.perf_counter() + seconds
    while (t0 := time.perf_counter()) < end:
        await client.set(key, "1")
        await client.delete(key)
        lat.append(time.perf_counter() - t0)
    await client.aclose()
    return lat


def _sqlite_baseline(path: str, start_at: float, seconds: float) -> list[float]:
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS baseline (id INTEGER PRIMARY KEY, pid INTEGER)")
    time.sleep(max(0.0, start_at - time.time()))
    lat: list[float] = []
    end = time.perf_counter() + seconds
    while (t0 := time.perf_counter()) < end:
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("INSERT INTO baseline (pid) VALUES (?)", (os.getpid(),)).lastrowid
        db.execute("COMMIT")
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM baseline WHERE id = ?", (row,))
        db.execute("COMMIT")
        lat.append(time.perf_counter() - t0)
    db.close()
    return lat


def _worker(args: tuple[str, str, float, float]) -> list[float]:
    kind, target, start_at, seconds = args
    if kind == "leases":
        return asyncio.run(_leases(target, start_at, seconds))
    if kind == "leases-redis-py":
        return asyncio.run(_leases(target, start_at, seconds, "redis-py"))
    if kind == "redis-baseline":
        return asyncio.run(_redis_baseline(target, start_at, seconds))
    return _sqlite_baseline(target, start_at, seconds)


def _run(kind: str, target: str, procs: int, seconds: float) -> tuple[float, list[float]]:
    start_at = time.time() + 1.5  # every process connected before the clock starts
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        results = pool.map(_worker, [(kind, target, start_at, seconds)] * procs)
    latencies = [x for r in results for x in r]
    return len(latencies) / seconds, latencies


def measure(
    store: str, url: str, baseline_target: str, procs: int, seconds: float, repeat: int = 1
) -> Row:
    """Alternate ours and the baseline ``repeat`` times; report the median of each (a
    shared 2-core machine drifts between runs, and alternating spreads that evenly)."""
    base_kind = "sqlite-baseline" if store == "sqlite" else "redis-baseline"
    kind = "leases-redis-py" if store == "redis-py" else "leases"
    rates: list[float] = []
    base_rates: list[float] = []
    lat: list[float] = []
    for _ in range(repeat):
        rate_i, lat_i = _run(kind, url, procs, seconds)
        rates.append(rate_i)
        lat.extend(lat_i)
        base_rates.append(_run(base_kind, baseline_target, procs, seconds)[0])
    rate, base_rate = statistics.median(rates), statistics.median(base_rates)
    target = TARGETS.get(store) if procs == 4 else None
    return Row(
        store=store,
        procs=procs,
        ops_per_s=round(rate, 1),
        p50_ms=round(_percentile(lat, 0.50) * 1000, 3),
        p99_ms=round(_percentile(lat, 0.99) * 1000, 3),
        baseline_ops_per_s=round(base_rate, 1),
        ratio_to_baseline=round(rate / base_rate, 3) if base_rate else 0.0,
        target_ops_per_s=target,
        meets_target=None if target is None else rate >= target,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (median)")
    parser.add_argument("--procs", default="1,4", help="comma-separated process counts")
    parser.add_argument("--redis", default=None, help="Redis URL (default: a private Valkey)")
    parser.add_argument(
        "--stores",
        default="redis,sqlite,redis-py",
        help="redis (our RESP client), sqlite, redis-py (the same store over redis-py)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    procs = [int(p) for p in args.procs.split(",")]
    stores = args.stores.split(",")
    rows: list[Row] = []
    valkey = ValkeyServer() if args.redis is None and {"redis", "redis-py"} & set(stores) else None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            redis_url = args.redis or (valkey.start() if valkey else "")
            if valkey is not None:
                valkey.wait_out_recovery()  # a new server grants nothing for 7.5 s
            for store in stores:
                for n in procs:
                    if store in ("redis", "redis-py"):
                        url = f"{redis_url}?prefix=bench-{store}-{n}:"
                        rows.append(measure(store, url, redis_url, n, args.seconds, args.repeat))
                    else:
                        url = f"sqlite:///{Path(tmp) / f'ledger-{n}.db'}"
                        base = str(Path(tmp) / f"baseline-{n}.db")
                        rows.append(measure("sqlite", url, base, n, args.seconds, args.repeat))
                    _print_row(rows[-1])
        finally:
            if valkey is not None:
                valkey.stop()
    if args.json:
        summary: dict[str, Any] = {
            "benchmark": "leases",
            "seconds": args.seconds,
            "repeat": args.repeat,
            "cpus": os.cpu_count(),
            "rows": [asdict(r) for r in rows],
        }
        print(json.dumps(summary))
    return 0 if all(r.meets_target is not False for r in rows) else 1


_HEADER_DONE = False


def _print_row(row: Row) -> None:
    global _HEADER_DONE
    if not _HEADER_DONE:
        print(
            f"{'store':7} {'procs':>5} {'grant+release/s':>16} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'baseline/s':>11} {'ratio':>6} {'target':>7}",
            flush=True,
        )
        _HEADER_DONE = True
    target = "-" if row.target_ops_per_s is None else f"{row.target_ops_per_s:.0f}"
    mark = "" if row.meets_target is None else (" ok" if row.meets_target else " MISSED")
    print(
        f"{row.store:7} {row.procs:5d} {row.ops_per_s:16.1f} {row.p50_ms:8.3f} "
        f"{row.p99_ms:8.3f} {row.baseline_ops_per_s:11.1f} {row.ratio_to_baseline:6.3f} "
        f"{target:>7}{mark}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
