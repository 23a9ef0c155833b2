"""The engine hands each backend the budget its slot's leases hold."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from model_boss import Device, GPUBoss, RAMBoss
from model_boss.backends import Backend, LeaseBudget, create_backend
from model_boss.engine import Engine, EngineModel, SlotLedger
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
    ledger = SlotLedger(GPUBoss(url(), [Device(0, 10_000)], host="t"), None)
    budget = await budget_of(simulated("a", 6000), ledger)
    assert budget == LeaseBudget(gpu_mb={0: 6000}, gpu_total_mb={0: 10_000})
    assert budget.on_gpu


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
