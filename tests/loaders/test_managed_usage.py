"""ManagedModelLoader's usage watch: what a loaded model really uses, beside its lease."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_boss import GPUBoss, RAMBoss
from model_boss.backends import Backend, create_backend
from model_boss.loaders import FunctionLoader, ManagedModelLoader, Target
from tests.backends.conftest import FAKES


class Hog:
    """An in-process model that holds ``mb`` MiB of written memory."""

    def __init__(self, mb: int) -> None:
        self.weights = b"\x01" * (mb * 1024 * 1024)


class FakeNvml:
    def __init__(self, per_pid: Mapping[int, int]) -> None:
        self.per_pid = dict(per_pid)

    def process_mb(self) -> Mapping[int, Mapping[int, int]]:
        return {0: self.per_pid}


class InItsOwnProcess:
    """A loaded object whose model runs in a backend process (as a GGUF model's does)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend


async def test_an_in_process_model_reports_what_it_added_to_this_process(
    cpu_boss: GPUBoss, ram_boss: RAMBoss
) -> None:
    loader = FunctionLoader(lambda path, target: Hog(150))
    async with ManagedModelLoader(cpu_boss, ram_boss=ram_boss, usage_interval_s=None) as kit:
        small = await kit.load("small", loader=loader, vram_mb=50)
        await kit.measure_usage()
        status = small.status()
        assert status["leased_mb"] == 50
        assert 130 <= status["used_mb"] <= 180
        assert status["over_lease"] is True
        roomy = await kit.load("roomy", loader=loader, vram_mb=400)
        await kit.measure_usage()
        assert 130 <= roomy.status()["used_mb"] <= 180
        assert roomy.status()["over_lease"] is False


async def test_a_model_in_its_own_process_is_measured_there_on_its_gpu(
    gpu_boss: GPUBoss,
) -> None:
    started: list[Backend] = []

    async def load(path: Path | None, target: Target) -> InItsOwnProcess:
        entry = {"path": "fake-model", "vllm_serve": {"binary": str(FAKES / "vllm")}}
        backend = create_backend("vllm_serve", "m", entry, gpus=[0])
        await backend.start()
        started.append(backend)
        return InItsOwnProcess(backend)

    async def unload(model: Any) -> None:
        await model.backend.stop()

    nvml = FakeNvml({os.getpid(): 5000})  # this process's own GPU use is not the model's
    async with ManagedModelLoader(gpu_boss, usage_interval_s=0.05, gpu_probe=nvml) as kit:
        model = await kit.load("m", loader=FunctionLoader(load, unload), vram_mb=500)
        pid = started[0].status()["pid"]
        nvml.per_pid[pid] = 700
        for _ in range(200):  # the watch runs on its own every 50 ms
            if model.status()["used_mb"] == 700:
                break
            await asyncio.sleep(0.02)
        status = model.status()
        assert (status["used_mb"], status["leased_mb"], status["over_lease"]) == (700, 500, True)
        nvml.per_pid[pid] = 480
        await kit.measure_usage()
        assert model.status()["over_lease"] is False
    assert kit._usage_task is None  # closed with the loader
