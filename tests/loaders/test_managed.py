"""ManagedModelLoader over a real SQLite ledger, with FunctionLoader models (no framework)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from model_boss import AcquireTimeout, Device, GPUBoss, LeaseLost, RAMBoss, UnknownDevice
from model_boss.config import settings_from_mapping
from model_boss.loaders import (
    FunctionLoader,
    ManagedModelLoader,
    ModelLoadFailed,
    ModelState,
    ModelUnloaded,
    Target,
    UnknownLoader,
    torch_device,
)
from tests.loaders.conftest import used_mb


class Weights:
    """A stand-in for a framework model: counts loads and unloads."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.freed = False

    async def answer(self, question: str) -> str:
        await asyncio.sleep(0)
        return f"{question}!"


def counting_loader(
    log: list[str], *, kind: str = "function", fail: bool = False
) -> FunctionLoader:
    def load(path: Path | None, target: Target) -> Weights:
        log.append(f"load {target.device}")
        if fail:
            raise RuntimeError("weights are corrupt")
        return Weights(target)

    def unload(model: Weights) -> None:
        log.append("unload")
        model.freed = True

    return FunctionLoader(load, unload, kind=kind)


async def test_load_takes_the_lease_before_loading_and_unload_gives_it_back(
    gpu_boss: GPUBoss,
) -> None:
    seen: list[dict[str, int]] = []

    async def load(path: Path | None, target: Target) -> Weights:
        seen.append(await used_mb(gpu_boss))  # the memory is ours while we load
        return Weights(target)

    async with ManagedModelLoader(gpu_boss) as kit:
        model = await kit.load("m", loader=FunctionLoader(load), vram_mb=3000)
        assert seen == [{"t:gpu0": 3000}]
        assert model.device == "cuda:0"
        assert model.target == Target("cuda:0", 0, 3000, total_mb=10_000)
        (pool,) = (await gpu_boss.status()).pools
        assert [(lease.model_id, lease.mb) for lease in pool.leases] == [("m", 3000)]
        assert await kit.unload("m") is True
        assert await used_mb(gpu_boss) == {"t:gpu0": 0}
        assert model.state is ModelState.UNLOADED
        assert await kit.unload("m") is False


async def test_a_model_loaded_twice_at_once_is_loaded_once(gpu_boss: GPUBoss) -> None:
    log: list[str] = []
    loader = counting_loader(log)
    async with ManagedModelLoader(gpu_boss) as kit:
        a, b = await asyncio.gather(
            kit.load("m", loader=loader, vram_mb=2000), kit.load("m", loader=loader, vram_mb=2000)
        )
        assert a is b
        assert log == ["load cuda:0"]
        assert await used_mb(gpu_boss) == {"t:gpu0": 2000}
    assert log == ["load cuda:0", "unload"]  # close() unloads everything
    assert await used_mb(gpu_boss) == {"t:gpu0": 0}


async def test_a_failed_load_releases_its_lease(gpu_boss: GPUBoss) -> None:
    async with ManagedModelLoader(gpu_boss) as kit:
        with pytest.raises(ModelLoadFailed, match="weights are corrupt"):
            await kit.load("m", loader=counting_loader([], fail=True), vram_mb=2000)
        assert await used_mb(gpu_boss) == {"t:gpu0": 0}
        assert kit.get("m") is None


async def test_an_unloaded_model_refuses_use(gpu_boss: GPUBoss) -> None:
    async with ManagedModelLoader(gpu_boss) as kit:
        model = await kit.load("m", loader=counting_loader([]), vram_mb=1000)
        assert await model.answer("ready") == "ready!"  # async methods fall through, as a use
        await model.unload()
        with pytest.raises(ModelUnloaded, match="unloaded: unload"):
            await model.answer("again")
        with pytest.raises(ModelUnloaded):
            async with model.use():
                pass
        with pytest.raises(ModelUnloaded):
            _ = model.model


async def test_an_idle_model_is_unloaded_but_not_while_in_use(gpu_boss: GPUBoss) -> None:
    log: list[str] = []
    async with ManagedModelLoader(gpu_boss, idle_timeout_s=0.2) as kit:
        model = await kit.load("m", loader=counting_loader(log), vram_mb=1000)
        async with model.use():
            await asyncio.sleep(0.5)  # longer than the timeout, but in use
            assert model.loaded
        await asyncio.sleep(0.1)
        assert model.loaded  # the idle clock started when the use ended
        await asyncio.wait_for(model.wait_unloaded(), 2.0)
        assert model.unload_reason == "idle"
        assert log == ["load cuda:0", "unload"]
        assert await used_mb(gpu_boss) == {"t:gpu0": 0}


async def test_a_more_urgent_holder_gets_the_memory_once_the_running_use_ends(
    ledger_url: str,
) -> None:
    # A short TTL: holders hear of preemption requests at their renewals (every TTL/3).
    mine = GPUBoss(ledger_url, [Device(0, 10_000)], host="t", holder="kit", ttl_s=0.6)
    kit = ManagedModelLoader(mine, priority="low")
    model = await kit.load("m", loader=counting_loader([]), vram_mb=8000)
    async with GPUBoss(ledger_url, [Device(0, 10_000)], host="t", holder="urgent-job") as other:
        async with model.use():
            waiter = asyncio.create_task(
                other.acquire(vram_mb=6000, priority="urgent", timeout=10).__aenter__()
            )
            for _ in range(200):  # the preemption request arrives with the next renewal
                if model.state is ModelState.UNLOADING:
                    break
                await asyncio.sleep(0.02)
            assert model.state is ModelState.UNLOADING
            with pytest.raises(ModelUnloaded, match="preempted"):
                async with model.use():  # no new use once asked
                    pass
            assert not waiter.done()  # the running use keeps the memory
        lease = await asyncio.wait_for(waiter, 5)
        assert model.status()["state"] == "unloaded"
        assert model.unload_reason.startswith("preempted")
        assert lease.mb == 6000
        await lease.release()
    await kit.close()
    await mine.close()


async def test_a_lost_lease_unloads_the_model_at_once_even_in_use(gpu_boss: GPUBoss) -> None:
    log: list[str] = []
    async with ManagedModelLoader(gpu_boss) as kit:
        model = await kit.load("m", loader=counting_loader(log), vram_mb=1000)
        async with model.use():
            model.lease.lost.set()  # as when the heartbeat could not renew in time
            await asyncio.wait_for(model.wait_unloaded(), 2.0)
            assert log == ["load cuda:0", "unload"]
        assert "lease lost" in model.unload_reason
        with pytest.raises((ModelUnloaded, LeaseLost)):
            async with model.use():
                pass


async def test_a_host_without_gpus_loads_to_the_cpu_under_a_ram_lease(
    cpu_boss: GPUBoss, ram_boss: RAMBoss
) -> None:
    log: list[str] = []
    async with ManagedModelLoader(cpu_boss, ram_boss=ram_boss) as kit:
        model = await kit.load("m", loader=counting_loader(log), vram_mb=4000)
        assert model.device == "cpu"
        assert model.lease.pool == "t:ram"
        assert (await used_mb(ram_boss))["t:ram"] == 4000
        with pytest.raises(UnknownDevice, match="no GPUs"):
            await kit.load("g", loader=counting_loader(log), vram_mb=10, device="gpu")
    assert (await used_mb(ram_boss))["t:ram"] == 0


async def test_device_cpu_takes_ram_even_where_there_are_gpus(
    gpu_boss: GPUBoss, ram_boss: RAMBoss
) -> None:
    async with ManagedModelLoader(gpu_boss, ram_boss=ram_boss) as kit:
        model = await kit.load("m", loader=counting_loader([]), vram_mb=500, device="cpu")
        assert (model.device, model.lease.pool) == ("cpu", "t:ram")
        assert await used_mb(gpu_boss) == {"t:gpu0": 0, "t:ram": 500}


async def test_no_memory_within_the_timeout_raises_and_loads_nothing(gpu_boss: GPUBoss) -> None:
    log: list[str] = []
    async with ManagedModelLoader(gpu_boss, unload_when_preempted=False) as kit:
        await kit.load("big", loader=counting_loader(log), vram_mb=9000, priority="urgent")
        with pytest.raises(AcquireTimeout):
            await kit.load("other", loader=counting_loader(log), vram_mb=2000, timeout=0.3)
        assert log == ["load cuda:0"]


def test_torch_device_numbers_gpus_as_cuda_visible_devices_does() -> None:
    assert torch_device(3, env={}) == "cuda:3"
    assert torch_device(3, env={"CUDA_VISIBLE_DEVICES": "2,3"}) == "cuda:1"
    with pytest.raises(UnknownDevice):
        torch_device(0, env={"CUDA_VISIBLE_DEVICES": "2,3"})


async def test_a_manifest_model_loads_by_id_with_its_path_size_and_options(
    gpu_boss: GPUBoss, tmp_path: Path
) -> None:
    weights = tmp_path / "chat.gguf"
    weights.write_bytes(b"not really gguf")
    settings = settings_from_mapping(
        {
            "service": {"models_root": str(tmp_path)},
            "models": {
                "chat": {"path": "chat.gguf", "vram_mb": 2500, "context_size": 1024},
                "remote": {"backend": "openai_remote", "openai_remote": {"base_url": "http://x"}},
            },
        }
    )
    got: list[tuple[Path | None, str]] = []

    def load(path: Path | None, target: Target) -> str:
        got.append((path, target.device))
        return "loaded"

    kit = ManagedModelLoader(gpu_boss, settings=settings, loaders={"gguf": FunctionLoader(load)})
    async with kit:
        model = await kit.load("chat")  # llama_server backend -> the gguf loader
        assert got == [(weights, "cuda:0")]
        assert model.mb == 2500
        with pytest.raises(UnknownLoader, match="not in the manifest"):
            await kit.load("nope")
        with pytest.raises(UnknownLoader, match="openai_remote backend"):
            await kit.load("remote")


async def test_bad_requests_fail_before_any_lease(gpu_boss: GPUBoss, tmp_path: Path) -> None:
    async with ManagedModelLoader(gpu_boss) as kit:
        with pytest.raises(UnknownLoader, match="unknown loader 'tensorflow'"):
            await kit.load("m", tmp_path, loader="tensorflow", vram_mb=10)
        with pytest.raises(FileNotFoundError, match=r"missing\.gguf: no such file"):
            await kit.load("m", tmp_path / "missing.gguf", vram_mb=10)
        odd = tmp_path / "weights.bin"
        odd.write_bytes(b"x")
        with pytest.raises(UnknownLoader, match="cannot tell the loader"):
            await kit.load("m", odd, vram_mb=10)
        with pytest.raises(ValueError, match="give vram_mb"):
            await kit.load("m", loader=counting_loader([]))
        with pytest.raises(ValueError, match="device must be"):
            await kit.load("m", loader=counting_loader([]), vram_mb=10, device="tpu")
        assert await used_mb(gpu_boss) == {"t:gpu0": 0}


def test_idle_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_timeout_s"):
        ManagedModelLoader(GPUBoss("memory://x", [Device(0, 1)]), idle_timeout_s=0)


async def test_status_lists_each_model_with_its_lease(gpu_boss: GPUBoss) -> None:
    async with ManagedModelLoader(gpu_boss) as kit:
        await kit.load("m", loader=counting_loader([]), vram_mb=1200)
        (status,) = kit.status()
        expected: dict[str, Any] = {"id": "m", "state": "loaded", "device": "cuda:0", "mb": 1200}
        assert {k: status[k] for k in expected} == expected
        assert status["pool"] == "t:gpu0"
        assert status["token"] >= 1
