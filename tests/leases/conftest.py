from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from model_boss.leases import LeaseStore, open_store
from tests.conftest import redis_url_for, store_kinds


def ledger_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty ledger of the given kind (Redis ones get a unique key prefix)."""
    tag = secrets.token_hex(4)
    if kind == "memory":
        return f"memory://test-{tag}"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / f'ledger-{tag}.db'}"
    return f"{redis_url_for(kind, request)}?prefix=mbtest-{tag}:"


@pytest.fixture(params=store_kinds())
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return ledger_url(request.param, tmp_path, request)


@pytest.fixture
async def store(url: str) -> AsyncIterator[LeaseStore]:
    s = open_store(url)
    await s.connect()
    await s.register_pool("h:gpu0", 10_000)
    await s.register_pool("h:gpu1", 10_000)
    try:
        yield s
    finally:
        await s.close()
