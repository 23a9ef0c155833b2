"""GPULifespanManager and the health route in a real FastAPI app (Starlette's TestClient
runs the lifespan), and IdleResourceManager on its own."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from model_boss import Device, GPUBoss
from model_boss.loaders import (
    FunctionLoader,
    GPULifespanManager,
    IdleResourceManager,
    ManagedModelLoader,
    Target,
    add_health_route,
)


class ChatService:
    """What a feature's model runner looks like with the kit."""

    def __init__(self, ledger: str, fail: bool = False) -> None:
        self.ledger = ledger
        self.fail = fail
        self.loader: ManagedModelLoader | None = None

    async def startup(self) -> None:
        boss = GPUBoss(self.ledger, [Device(0, 10_000)], host="t", holder="runner")
        self.loader = ManagedModelLoader(boss)
        await self.loader.load("chat", loader=FunctionLoader(lambda p, t: "weights"), vram_mb=3000)
        if self.fail:
            raise RuntimeError("warm-up failed")

    async def shutdown(self) -> None:
        if self.loader is not None:
            await self.loader.close()
            await self.loader.boss.close()


async def ledger_used(ledger: str) -> int:
    async with GPUBoss(ledger, [Device(0, 10_000)], host="t") as boss:
        return sum(p.used_mb for p in (await boss.status()).pools)


def test_the_lifespan_loads_before_serving_and_releases_after(tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    app = FastAPI(lifespan=GPULifespanManager(lambda: ChatService(ledger)))
    add_health_route(app, lambda: app.state.service.loader)
    with TestClient(app) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok"
        assert health["model_loaded"] is True
        (model,) = health["models"]
        assert (model["id"], model["mb"], model["device"]) == ("chat", 3000, "cuda:0")
        assert asyncio.run(ledger_used(ledger)) == 3000
    assert asyncio.run(ledger_used(ledger)) == 0


def test_a_failed_startup_still_releases_what_it_took(tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    app = FastAPI(lifespan=GPULifespanManager(lambda: ChatService(ledger, fail=True)))
    with pytest.raises(RuntimeError, match="warm-up failed"), TestClient(app):
        pass
    assert asyncio.run(ledger_used(ledger)) == 0


def test_health_before_any_model_says_none_is_loaded() -> None:
    app = FastAPI()
    add_health_route(app, lambda: None)
    with TestClient(app) as client:
        assert client.get("/health").json() == {
            "status": "ok",
            "model_loaded": False,
            "models": [],
        }


async def test_idle_manager_fires_once_per_idle_period_and_never_while_busy() -> None:
    fired: list[float] = []

    async def on_idle() -> None:
        fired.append(asyncio.get_running_loop().time())

    idle = IdleResourceManager(on_idle, timeout_s=0.15)
    idle.start()
    async with idle.busy():
        await asyncio.sleep(0.3)
        assert fired == []
        assert idle.in_use == 1
    await asyncio.sleep(0.3)
    assert len(fired) == 1  # once, not every 0.15 s
    idle.touch()  # a new use starts a new idle period
    await asyncio.sleep(0.3)
    assert len(fired) == 2
    await idle.stop()


async def test_idle_manager_with_an_infinite_timeout_never_fires() -> None:
    fired: list[int] = []

    async def on_idle() -> None:
        fired.append(1)

    idle = IdleResourceManager(on_idle, timeout_s=math.inf)
    idle.start()
    await asyncio.sleep(0.05)
    assert fired == []
    await idle.stop()
    with pytest.raises(ValueError, match="positive"):
        IdleResourceManager(on_idle, timeout_s=0)


def test_function_loader_estimate_can_be_a_number_or_a_function(tmp_path: Path) -> None:
    fixed = FunctionLoader(lambda p, t: None, estimate_mb=1234)
    sized = FunctionLoader(lambda p, t: None, estimate_mb=lambda p: 7 if p else None)
    assert fixed.estimate_mb(None, {}) == 1234
    assert sized.estimate_mb(tmp_path, {}) == 7
    assert sized.estimate_mb(None, {}) is None
    assert Target("cpu").on_gpu is False
