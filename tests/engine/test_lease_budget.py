"""The engine hands each backend the budget its slot's leases hold."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import psutil
import pytest

from model_boss import Device, GPUBoss, RAMBoss
from model_boss.backends import Backend, LeaseBudget, create_backend
from model_boss.config import Settings, settings_from_mapping
from model_boss.engine import Engine, EngineModel, SlotLedger, engine_models
from model_boss.errors import ConfigError
from model_boss.scheduling import ModelProfile, SchedulerConfig


def simulated(name: str, mb: int, *, splittable: bool = False) -> EngineModel:
    profile = ModelProfile(name, mb, load_s=0.01, splittable=splittable)
    entry: dict[str, Any] = {"simulated": {"load_s": 0.01, "tokens_per_s": 1000}}
    return EngineModel(profile=profile, backend="simulated", entry=entry)


async def budget_of(model: EngineModel, ledger: SlotLedger) -> LeaseBudget | None:
    seen: list[LeaseBudget | None] = []

    def factory(*args: Any, **kwargs: Any) -> Backend:
        seen.append(kwargs.get("budget"))
        return create_backend(*args, **kwargs)

    eng = Engine([model], ledger, factory=factory, config=SchedulerConfig(batch_window_s=0.0))
    await eng.start()
    try:
        ticket = eng.submit(model.model_id, priority=10, client="c")
        await asyncio.wait_for(ticket.future, 10)
        eng.finish(ticket)
    finally:
        await eng.stop()
    assert len(seen) == 1
    return seen[0]


def url() -> str:
    return f"memory://budget-{secrets.token_hex(4)}"


async def test_a_gpu_slot_gets_its_lease_and_the_device_total() -> None:
    nvml_gpu = Device(0, 10_000, name="H200", uuid="GPU-0")  # as NVML finds one
    ledger = SlotLedger(GPUBoss(url(), [nvml_gpu], host="t"), None)
    budget = await budget_of(simulated("a", 6000), ledger)
    assert budget == LeaseBudget(gpu_mb={0: 6000}, gpu_total_mb={0: 10_000})
    assert budget.on_gpu


async def test_a_declared_gpu_is_marked_as_declared() -> None:
    ledger = SlotLedger(GPUBoss(url(), [Device(0, 10_000)], host="t"), None)  # no uuid
    budget = await budget_of(simulated("a", 6000), ledger)
    assert budget is not None
    assert budget.gpus_declared


async def test_a_split_slot_gets_its_share_of_each_gpu() -> None:
    devices = [Device(0, 10_000), Device(1, 8_000)]
    ledger = SlotLedger(GPUBoss(url(), devices, host="t"), None)
    budget = await budget_of(simulated("big", 14_000, splittable=True), ledger)
    assert budget is not None
    assert budget.gpu_total_mb == {0: 10_000, 1: 8_000}
    assert set(budget.gpu_mb) == {0, 1}
    assert sum(budget.gpu_mb.values()) == 14_000
    assert budget.ram_mb == 0


async def test_a_ram_slot_gets_ram_mb_and_no_gpu() -> None:
    ledger = SlotLedger(None, RAMBoss(url(), total_mb=4000, host="t"))
    budget = await budget_of(simulated("a", 1500), ledger)
    assert budget == LeaseBudget(ram_mb=1500)
    assert not budget.on_gpu


async def test_a_cpu_model_on_a_gpu_host_leases_ram_and_sees_no_gpu() -> None:
    ledger_url = url()
    ledger = SlotLedger(
        GPUBoss(ledger_url, [Device(0, 10_000)], host="t"),
        RAMBoss(ledger_url, total_mb=4000, host="t"),
        ram_pool=True,
    )
    assert [(p.pool_id, p.kind) for p in ledger.pools] == [("t:gpu0", "gpu"), ("t:ram", "ram")]
    profile = ModelProfile("cpu", 1500, load_s=0.01, pool_kind="ram")
    entry: dict[str, Any] = {"simulated": {"load_s": 0.01, "tokens_per_s": 1000}}
    gpus: list[Any] = []

    def factory(*args: Any, **kwargs: Any) -> Backend:
        gpus.append(kwargs.get("gpus"))
        return create_backend(*args, **kwargs)

    model = EngineModel(profile=profile, backend="simulated", entry=entry)
    eng = Engine([model], ledger, factory=factory, config=SchedulerConfig(batch_window_s=0.0))
    await eng.start()
    try:
        ticket = eng.submit("cpu", priority=10, client="c")
        await asyncio.wait_for(ticket.future, 10)
        eng.finish(ticket)
        assert eng.slots_snapshot()[0]["pools"] == ["t:ram"]
    finally:
        await eng.stop()
    assert gpus == [[]]  # CUDA_VISIBLE_DEVICES="" for the process


def test_without_ram_pool_a_gpu_host_offers_only_its_gpus() -> None:
    ledger_url = url()
    ledger = SlotLedger(
        GPUBoss(ledger_url, [Device(0, 10_000)], host="t"),
        RAMBoss(ledger_url, total_mb=4000, host="t"),
    )
    assert [p.pool_id for p in ledger.pools] == ["t:gpu0"]


def settings(model: dict[str, Any]) -> Settings:
    return settings_from_mapping({"models": {"m": model}}, "models.yaml")


def test_a_model_asking_for_no_gpu_layers_is_a_ram_model() -> None:
    cpu = settings({"path": "/m.gguf", "vram_mb": 900, "llama_server": {"n_gpu_layers": 0}})
    (model,) = engine_models(cpu)
    assert model.profile.pool_kind == "ram"
    (gpu,) = engine_models(settings({"path": "/m.gguf", "vram_mb": 900}))
    assert gpu.profile.pool_kind is None
    art = settings({"category": "diffusion", "path": "/p", "vram_mb": 900,
                    "diffusers": {"device": "cpu"}})  # fmt: skip
    assert engine_models(art)[0].profile.pool_kind == "ram"


def test_a_vllm_share_of_a_gpu_sizes_its_lease_from_the_gpus_total() -> None:
    spec = {"backend": "vllm_serve", "path": "org/m", "vllm_serve": {"gpu_memory_utilization": 0.5}}
    (model,) = engine_models(settings(spec), gpu_total_mb=24_000)
    assert model.profile.vram_mb == 12_000
    tp = {**spec, "vllm_serve": {"gpu_memory_utilization": 0.4, "tensor_parallel_size": 2}}
    assert engine_models(settings(tp), gpu_total_mb=10_000)[0].profile.vram_mb == 8000
    with pytest.raises(ConfigError, match=r"models\.m\.vllm_serve\.gpu_memory_utilization"):
        engine_models(settings(spec))  # no GPU: nothing to take a share of


@pytest.mark.slow
async def test_a_cpu_model_beside_a_gpu_runs_the_real_llama_server_on_the_ram_pool(
    demo_model: Path, llama_server_binary: Path, tmp_path: Path
) -> None:
    cpu = {
        "path": str(demo_model),
        "llama_server": {"n_gpu_layers": 0, "binary": str(llama_server_binary), "threads": 2},
    }
    (model,) = engine_models(settings(cpu))
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = SlotLedger(
        GPUBoss(ledger_url, [Device(0, 1500, uuid="GPU-0")], host="t"),  # as if NVML found it
        RAMBoss(ledger_url, total_mb=4000, host="t"),
        ram_pool=True,
    )
    eng = Engine([model], ledger, log_dir=str(tmp_path))
    await eng.start()
    try:
        ticket = eng.submit("m", priority=10, client="c")
        backend = await asyncio.wait_for(ticket.future, 60)
        eng.finish(ticket)
        (slot,) = eng.slots_snapshot()
        assert slot["pools"] == ["t:ram"]
        pid = backend.status()["pid"]
        cmdline = psutil.Process(pid).cmdline()
        assert cmdline[cmdline.index("--n-gpu-layers") + 1] == "0"
        assert cmdline[cmdline.index("--ctx-size") + 1] == "4096"
        ram = await ledger.pool_status("t:ram")
        assert ram is not None
        assert [lease.mb for lease in ram.leases] == [model.profile.vram_mb]
    finally:
        await eng.stop()
