"""Models that run on the CPU lease the host RAM pool, never a GPU, and GPU models never RAM."""

from __future__ import annotations

from model_boss.scheduling import (
    AcquireLease,
    AdminLoad,
    LoadRefused,
    PoolSpec,
    Reject,
    Scheduler,
    StopSlot,
)
from tests.scheduling.conftest import Harness, dispatched, model, of_type

GPU_AND_RAM = [PoolSpec("h:gpu0", 24_000, kind="gpu"), PoolSpec("h:ram", 64_000, kind="ram")]


def harness(*models: object, pools: list[PoolSpec] = GPU_AND_RAM) -> Harness:
    h = Harness([])
    h.scheduler = Scheduler(models, pools)  # type: ignore[arg-type]
    return h


def pools_of(effects: object) -> dict[str, tuple[str, ...]]:
    return {e.model: e.pools for e in of_type(effects, AcquireLease) if isinstance(e, AcquireLease)}  # type: ignore[arg-type]


def test_a_cpu_model_leases_ram_even_when_the_gpu_has_room() -> None:
    h = harness(model("cpu", 4000, pool_kind="ram"), model("gpu", 4000))
    assert pools_of(h.arrive("c1", "cpu")) == {"cpu": ("h:ram",)}
    assert pools_of(h.arrive("g1", "gpu")) == {"gpu": ("h:gpu0",)}


def test_a_gpu_model_never_spills_into_ram() -> None:
    h = harness(model("a", 20_000), model("b", 20_000))
    h.arrive("a1", "a")
    out = h.at(1.0).arrive("b1", "b")  # a is busy: b waits for the GPU, RAM is not an option
    assert pools_of(out) == {}
    assert dispatched(out) == []
    out = h.at(2.0).done("a1")
    assert [e.model for e in of_type(out, StopSlot) if isinstance(e, StopSlot)] == ["a"]
    assert pools_of(out) == {"b": ("h:gpu0",)}


def test_a_gpu_model_larger_than_every_gpu_is_refused_though_ram_could_hold_it() -> None:
    h = harness(model("huge", 40_000))
    (reject,) = of_type(h.arrive("h1", "huge"), Reject)
    assert isinstance(reject, Reject)
    assert reject.code == 507
    assert "largest pool has 24000 MB" in reject.reason


def test_a_cpu_model_is_refused_where_no_ram_pool_is_offered() -> None:
    h = harness(model("cpu", 1000, pool_kind="ram"), pools=[PoolSpec("h:gpu0", 24_000)])
    (reject,) = of_type(h.arrive("c1", "cpu"), Reject)
    assert isinstance(reject, Reject)
    assert reject.code == 507
    assert of_type(h.send(AdminLoad(1.0, "cpu")), LoadRefused) != []


def test_a_cpu_model_evicts_only_from_ram() -> None:
    h = harness(
        model("r1", 40_000, pool_kind="ram"),
        model("r2", 40_000, pool_kind="ram"),
        model("g", 20_000),
    )
    h.arrive("g1", "g")
    h.done("g1")
    h.arrive("a", "r1")
    h.done("a")
    out = h.at(1.0).arrive("b", "r2")
    assert [e.model for e in of_type(out, StopSlot) if isinstance(e, StopSlot)] == ["r1"]
    assert pools_of(out) == {"r2": ("h:ram",)}
    assert [s.model for s in h.scheduler.pool if s.live] == ["g", "r2"]


def test_a_pinned_cpu_model_loads_on_ram() -> None:
    h = harness(model("p", 2000, pool_kind="ram", pin=True))
    out = h.send(AdminLoad(0.0, "p"))
    assert pools_of(out) == {"p": ("h:ram",)}


def test_on_a_host_without_gpus_every_model_uses_the_ram_pool() -> None:
    h = harness(model("plain", 4000), model("cpu", 4000, pool_kind="ram"), pools=[GPU_AND_RAM[1]])
    assert pools_of(h.arrive("a", "plain")) == {"plain": ("h:ram",)}
    assert pools_of(h.arrive("b", "cpu")) == {"cpu": ("h:ram",)}
