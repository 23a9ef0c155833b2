"""The kit's torch loaders cap this process's CUDA allocator at what its leases hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from model_boss.backends import LeaseBudget
from model_boss.loaders import DiffusersLoader, HFModelLoader, Target, _torch
from model_boss.loaders._torch import load_capped, release_cuda_cap


class FakeCuda:
    def __init__(self, available: bool = True) -> None:
        self.available = available
        self.calls: list[tuple[float, int]] = []

    def is_available(self) -> bool:
        return self.available

    def set_per_process_memory_fraction(self, fraction: float, device: int) -> None:
        self.calls.append((fraction, device))


class Model:
    """Stands in for a loaded model (anything the loader returns)."""


@pytest.fixture(autouse=True)
def no_caps_held() -> Iterator[None]:
    yield
    _torch._held.clear()
    _torch._by_model.clear()


async def test_a_model_on_a_gpu_raises_the_cap_by_its_lease_before_it_loads() -> None:
    cuda = FakeCuda()
    seen: list[list[tuple[float, int]]] = []

    def load() -> Model:
        seen.append(list(cuda.calls))  # the cap was set before the load ran
        return Model()

    target = Target("cuda:1", 3, mb=6000, total_mb=24_000)
    model = await load_capped(target, load, cuda=cuda)
    assert seen == [[(0.25, 1)]]  # torch's cuda:1 is physical GPU 3

    second = await load_capped(Target("cuda:1", 3, 6000, 24_000), Model, cuda=cuda)
    assert cuda.calls[-1] == (0.5, 1)  # two models in one process: the sum of their leases

    release_cuda_cap(model, cuda=cuda)
    assert cuda.calls[-1] == (0.25, 1)
    release_cuda_cap(second, cuda=cuda)
    assert cuda.calls[-1] == (1.0, 1)  # nothing held there: the cap is lifted


async def test_a_failed_load_gives_its_share_back() -> None:
    cuda = FakeCuda()

    def fail() -> Model:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        await load_capped(Target("cuda:0", 0, 4000, 16_000), fail, cuda=cuda)
    assert cuda.calls == [(0.25, 0), (1.0, 0)]


async def test_on_the_cpu_or_without_cuda_nothing_is_capped() -> None:
    cuda = FakeCuda()
    await load_capped(Target("cpu", None, 4000), Model, cuda=cuda)
    await load_capped(Target("cuda:0", 0, 4000), Model, cuda=cuda)  # total unknown
    assert cuda.calls == []
    no_cuda = FakeCuda(available=False)
    await load_capped(Target("cuda:0", 0, 4000, 16_000), Model, cuda=no_cuda)
    assert no_cuda.calls == []


def test_a_target_is_a_lease_budget_for_a_backend() -> None:
    assert Target("cuda:0", 2, 6000, 24_000).budget == LeaseBudget(
        gpu_mb={2: 6000}, gpu_total_mb={2: 24_000}
    )
    assert Target("cpu", None, 1500).budget == LeaseBudget(ram_mb=1500)


async def test_the_hf_and_diffusers_loaders_load_under_the_cap_and_lift_it_on_unload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from model_boss.backends import _diffusers_worker
    from model_boss.loaders import _hf

    cuda = FakeCuda()
    monkeypatch.setattr(torch.cuda, "is_available", cuda.is_available)
    monkeypatch.setattr(
        torch.cuda, "set_per_process_memory_fraction", cuda.set_per_process_memory_fraction
    )
    capped_at_load: list[list[tuple[float, int]]] = []

    def load(*args: object) -> Model:
        capped_at_load.append(list(cuda.calls))
        return Model()

    monkeypatch.setattr(_hf, "_load", load)
    monkeypatch.setattr(_diffusers_worker, "load_pipeline", load)
    target = Target("cuda:0", 0, 4000, 16_000)
    hf = await HFModelLoader().load("m", Path("/models/m"), target, {})
    pipe = await DiffusersLoader().load("p", Path("/models/p"), target, {})
    assert capped_at_load == [[(0.25, 0)], [(0.25, 0), (0.5, 0)]]
    await HFModelLoader().unload(hf)
    await DiffusersLoader().unload(pipe)
    assert cuda.calls[-2:] == [(0.25, 0), (1.0, 0)]
