"""Fixtures of the construction-kit tests: a real SQLite ledger with a declared GPU and RAM."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from model_boss import Device, GPUBoss, RAMBoss


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
async def gpu_boss(ledger_url: str) -> AsyncIterator[GPUBoss]:
    async with GPUBoss(ledger_url, [Device(0, 10_000)], host="t", holder="kit") as boss:
        yield boss


@pytest.fixture
async def ram_boss(ledger_url: str) -> AsyncIterator[RAMBoss]:
    async with RAMBoss(ledger_url, total_mb=10_000, host="t", holder="kit") as boss:
        yield boss


@pytest.fixture
async def cpu_boss(ledger_url: str) -> AsyncIterator[GPUBoss]:
    """A GPUBoss of a host without GPUs: models go to the CPU under RAM leases."""
    async with GPUBoss(ledger_url, [], host="t", holder="kit") as boss:
        yield boss


async def used_mb(boss: GPUBoss | RAMBoss) -> dict[str, int]:
    return {p.pool: p.used_mb for p in (await boss.status()).pools}
