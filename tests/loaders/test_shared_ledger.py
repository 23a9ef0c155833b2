"""The two faces on one ledger: `model-boss serve` (a real subprocess) and a program using
the construction kit share one GPU through the same SQLite ledger file.

A program loading a HIGH model makes the coordinator give back its idle model; while the
program holds the memory, the coordinator's next load waits instead of over-committing;
once the program unloads, the coordinator loads and answers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path

import httpx
import pytest
import yaml

from model_boss import Device, GPUBoss
from model_boss.loaders import FunctionLoader, ManagedModelLoader, Target
from tests.e2e.conftest import start_coordinator

pytestmark = pytest.mark.slow


def chat(url: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)


def model_state(url: str, model: str) -> str:
    models = httpx.get(f"{url}/v1/admin/models", timeout=10).json()["models"]
    return str(next(m["state"] for m in models if m["id"] == model))


async def test_the_kit_and_the_coordinator_share_one_gpu_without_over_committing(
    tmp_path: Path,
) -> None:
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    manifest = tmp_path / "manifest.yaml"
    sim = {"simulated": {"load_s": 0.1, "tokens_per_s": 500, "output_tokens": 4}}
    manifest.write_text(
        yaml.safe_dump({"models": {"sim": {"backend": "simulated", "vram_mb": 6000, **sim}}})
    )
    env = {"MODEL_BOSS_DEVICES": "10000", "MODEL_BOSS_LEDGER_URL": ledger}
    proc, url = start_coordinator(tmp_path / "state", "--settings", str(manifest), env=env)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    try:
        assert (await asyncio.to_thread(chat, url, "sim")).status_code == 200
        boss = GPUBoss(ledger, [Device(0, 10_000)], holder="feature-runner")
        async with ManagedModelLoader(boss, priority="high") as kit:
            started = time.monotonic()
            mine = await kit.load(
                "mine", loader=FunctionLoader(lambda p, t: t), vram_mb=8000, timeout=60
            )
            waited = time.monotonic() - started
            assert mine.target == Target("cuda:0", 0, 8000, total_mb=10_000)
            assert model_state(url, "sim") != "ready"  # the coordinator gave its memory back
            (gpu,) = (await boss.status()).pools
            assert gpu.used_mb == 8000
            assert [lease.holder for lease in gpu.leases] == ["feature-runner"]

            # The coordinator must not over-commit: its request waits for the memory.
            pending = pool.submit(chat, url, "sim")
            await asyncio.sleep(2.0)
            assert not pending.done()
            assert (await boss.status()).pools[0].used_mb == 8000
            await mine.unload()
            answer = await asyncio.to_thread(pending.result, 60)
            assert answer.status_code == 200
            assert model_state(url, "sim") == "ready"
        print(f"the kit waited {waited:.1f} s for the coordinator to give the GPU back")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        proc.terminate()
        proc.communicate(timeout=30)
