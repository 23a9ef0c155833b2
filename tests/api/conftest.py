from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from model_boss import Device, GPUBoss
from model_boss.api import create_app
from model_boss.engine import Engine, EngineModel, SlotLedger
from model_boss.scheduling import ModelProfile, SchedulerConfig
from model_boss.testing import free_port


def sim_model(
    name: str,
    mb: int = 4000,
    *,
    pin: bool = False,
    load_s: float = 0.02,
    tokens_per_s: float = 2000.0,
    modalities: tuple[str, ...] = ("text",),
    backend: str = "simulated",
    entry: dict[str, Any] | None = None,
) -> EngineModel:
    return EngineModel(
        profile=ModelProfile(name, mb, pin=pin, load_s=load_s),
        backend=backend,
        entry=entry
        or {"simulated": {"load_s": load_s, "tokens_per_s": tokens_per_s, "output_tokens": 8}},
        modalities=frozenset(modalities),
    )


class Server:
    def __init__(self, engine: Engine, **app_kwargs: Any) -> None:
        self.engine = engine
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(engine, **app_kwargs)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Server:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


def make_engine(
    models: list[EngineModel], capacity_mb: int = 10_000, *, max_queue: int = 10_000
) -> Engine:
    boss = GPUBoss(f"memory://api-{secrets.token_hex(4)}", [Device(0, capacity_mb)], host="t")
    config = SchedulerConfig(batch_window_s=0.0, max_queue=max_queue)
    return Engine(models, SlotLedger(boss, None), config=config)


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    models = getattr(request, "param", None) or [
        sim_model("a"),
        sim_model("b"),
        sim_model("vision", modalities=("text", "image")),
    ]
    async with Server(make_engine(models)) as srv:
        yield srv
