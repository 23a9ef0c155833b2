"""Launch settings derived from a slot's lease, for every backend kind.

Single GPU, a slot split over two GPUs, the RAM pool, and the manifest setting a value
itself. The binary probes (``--help``, ``--list-devices``) run against a stand-in script
(fakes/llama_server_devices); the real CPU-only llama-server is checked at the end.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from gguf import GGUFWriter

from model_boss.backends import (
    BackendStartError,
    BackendState,
    DiffusersBackend,
    DiffusersOptions,
    LeaseBudget,
    LlamaServerBackend,
    LlamaServerOptions,
    VllmServeBackend,
    VllmServeOptions,
    cap_cuda_memory,
    create_backend,
    format_fractions,
    parse_fractions,
)
from model_boss.backends._llama_binary import (
    LlamaBinary,
    clear_probe_cache,
    parse_devices,
    probe_llama_server,
)
from model_boss.backends._llama_server import launch_settings
from model_boss.config import DEFAULT_CONTEXT, OVERHEAD_MB, read_gguf_info
from tests.backends.conftest import FAKES

H200 = "CUDA0: NVIDIA H200 (143771 MiB, 142000 MiB free)"
CUDA = LlamaBinary("llama-server", has_fit=True, ngl_all=True, gpu_devices=(H200,))
CPU_ONLY = LlamaBinary("llama-server", has_fit=True, ngl_all=True, gpu_devices=())
ONE_GPU = LeaseBudget(gpu_mb={0: 6000}, gpu_total_mb={0: 24_000})
SPLIT = LeaseBudget(gpu_mb={0: 8000, 1: 8000}, gpu_total_mb={0: 24_000, 1: 16_000})
RAM = LeaseBudget(ram_mb=2000)


@pytest.fixture(autouse=True)
def fresh_probes() -> Iterator[None]:
    clear_probe_cache()
    yield
    clear_probe_cache()


def gguf(
    path: Path, *, layers: int = 4, layer_mb: int = 1, other_mb: int = 2, context: int = 2048
) -> Path:
    """A GGUF file: ``other_mb`` MB outside the layers, ``layer_mb`` MB in each layer, and a
    KV cache of 2 kB per token (4 layers * 2 heads * (64 + 64) dims * 2 bytes)."""
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(layers)
    w.add_head_count(8)
    w.add_head_count_kv(2)
    w.add_embedding_length(512)
    w.add_context_length(context)
    w.add_tensor("token_embd.weight", np.zeros(other_mb * 1024 * 1024 // 4, np.float32))
    for i in range(layers):
        w.add_tensor(f"blk.{i}.weight", np.zeros(layer_mb * 1024 * 1024 // 4, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def llama(entry: dict[str, Any]) -> LlamaServerOptions:
    return LlamaServerOptions.from_manifest("m", {"path": "/models/m.gguf", **entry})


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


# -- llama_server: context ---------------------------------------------------------------


def test_the_context_is_the_manifests_else_the_default_capped_by_the_models(
    tmp_path: Path,
) -> None:
    short = read_gguf_info(gguf(tmp_path / "short.gguf", context=2048))
    long = read_gguf_info(gguf(tmp_path / "long.gguf", context=131_072))
    assert launch_settings(llama({}), ONE_GPU, CUDA, short).context_size == 2048
    assert launch_settings(llama({}), ONE_GPU, CUDA, long).context_size == DEFAULT_CONTEXT
    sized = llama({"context_size": 8192})
    assert launch_settings(sized, ONE_GPU, CUDA, long).context_size == 8192
    assert launch_settings(llama({}), None, None, None).context_size == DEFAULT_CONTEXT


def test_ctx_size_is_always_on_the_command_line() -> None:
    argv = LlamaServerBackend("m", llama({"llama_server": {"binary": "/bin/x"}})).command(1)
    assert flag(argv, "--ctx-size") == str(DEFAULT_CONTEXT)  # no model file: the default


# -- llama_server: layers ----------------------------------------------------------------


def test_a_gpu_lease_covering_the_estimate_offloads_every_layer(tmp_path: Path) -> None:
    info = read_gguf_info(gguf(tmp_path / "m.gguf"))
    estimate = 6 + 4 + OVERHEAD_MB  # weights, KV cache for 2048 tokens, overhead
    budget = LeaseBudget(gpu_mb={0: estimate}, gpu_total_mb={0: 24_000})
    assert launch_settings(llama({}), budget, CUDA, info).n_gpu_layers == "all"
    older = LlamaBinary("llama-server", gpu_devices=(H200,))  # no 'all' in its --help
    assert launch_settings(llama({}), budget, older, info).n_gpu_layers == "999"


def test_a_smaller_gpu_lease_offloads_the_layers_that_fit(tmp_path: Path) -> None:
    info = read_gguf_info(gguf(tmp_path / "m.gguf"))
    # overhead, 4 MB of KV cache, 2 MB outside the layers, then room for 2 of 1 MB
    budget = LeaseBudget(gpu_mb={0: OVERHEAD_MB + 4 + 2 + 2}, gpu_total_mb={0: 24_000})
    assert launch_settings(llama({}), budget, CUDA, info).n_gpu_layers == "2"


def test_a_split_slot_counts_every_gpus_share_less_one_overhead_each(tmp_path: Path) -> None:
    info = read_gguf_info(gguf(tmp_path / "m.gguf", layers=8, layer_mb=100))
    share = 300 + OVERHEAD_MB
    split = LeaseBudget(gpu_mb={0: share, 1: share}, gpu_total_mb={0: 24_000, 1: 24_000})
    # 600 MB beside the overheads, less 2 MB outside the layers and 8 MB of KV cache
    # (8 layers * 2048 tokens * 1 kB... = 8 MB): room for 5 layers of 100 MB
    assert launch_settings(llama({}), split, CUDA, info).n_gpu_layers == "5"
    argv = LlamaServerBackend(
        "m", llama({"llama_server": {"binary": "/bin/x"}}), gpus=(0, 1), budget=split
    ).command(1)
    assert flag(argv, "--tensor-split") == "1,1"


def test_a_ram_slot_offloads_no_layer(tmp_path: Path) -> None:
    info = read_gguf_info(gguf(tmp_path / "m.gguf"))
    assert launch_settings(llama({}), RAM, CPU_ONLY, info).n_gpu_layers == "0"
    assert launch_settings(llama({}), RAM, None, None).n_gpu_layers == "0"


def test_the_manifests_n_gpu_layers_is_kept(tmp_path: Path) -> None:
    info = read_gguf_info(gguf(tmp_path / "m.gguf"))
    chosen = llama({"llama_server": {"n_gpu_layers": 3}})
    assert launch_settings(chosen, ONE_GPU, CUDA, info).n_gpu_layers == "3"
    assert launch_settings(chosen, RAM, CUDA, info).n_gpu_layers == "3"
    assert launch_settings(chosen, None, None, info).n_gpu_layers == "3"


def test_without_a_lease_no_layers_are_chosen() -> None:
    assert launch_settings(llama({}), None, CUDA, None).n_gpu_layers is None


def test_fit_is_turned_off_only_where_the_binary_has_it() -> None:
    assert launch_settings(llama({}), ONE_GPU, CUDA, None).fit_off
    old = LlamaBinary("llama-server", gpu_devices=(H200,))
    assert not launch_settings(llama({}), ONE_GPU, old, None).fit_off


# -- llama_server: the binary's devices ----------------------------------------------------


def test_a_cpu_only_binary_is_refused_a_gpu_slot_with_how_to_get_a_cuda_build() -> None:
    with pytest.raises(BackendStartError) as caught:
        launch_settings(llama({}), ONE_GPU, CPU_ONLY, None)
    message = str(caught.value)
    assert "lists no GPU device" in message
    assert "GPU 0: 6000 MB" in message
    assert "scripts/build-llama-server.sh" in message
    assert "nvcc" in message
    assert "MODEL_BOSS_LLAMA_SERVER" in message
    assert "n_gpu_layers: 0" in message


def test_a_cpu_only_binary_may_serve_declared_gpus(caplog: pytest.LogCaptureFixture) -> None:
    # MODEL_BOSS_DEVICES declares GPUs that NVML never saw (a partition for tests, say)
    declared = LeaseBudget(gpu_mb={0: 600}, gpu_total_mb={0: 1500}, gpus_declared=True)
    assert launch_settings(llama({}), declared, CPU_ONLY, None).n_gpu_layers == "all"
    assert "declared GPUs are trusted" in caplog.text


def test_a_cpu_only_binary_may_serve_a_gpu_slot_that_asks_for_no_layers() -> None:
    settings = launch_settings(llama({"llama_server": {"n_gpu_layers": 0}}), ONE_GPU, CPU_ONLY)
    assert settings.n_gpu_layers == "0"


def test_a_binary_that_cannot_tell_its_devices_is_not_refused() -> None:
    unknown = LlamaBinary("llama-server")  # an old build without --list-devices
    assert launch_settings(llama({}), ONE_GPU, unknown, None).n_gpu_layers == "999"


def test_device_lists_are_read_as_llama_cpp_prints_them() -> None:
    assert parse_devices("Available devices:\n  (none)\n") == ()
    cuda = f"ggml_cuda_init: found 2 CUDA devices\nAvailable devices:\n  {H200}\n  CUDA1: B\n"
    assert parse_devices(cuda) == (H200, "CUDA1: B")
    assert parse_devices("Available devices:\n  BLAS: OpenBLAS\n") == ()
    assert parse_devices("error: unknown argument: --list-devices") is None


def fake_entry(tmp_path: Path, **env: str) -> dict[str, Any]:
    binary = tmp_path / "llama-server"
    shutil.copy(FAKES / "llama_server_devices", binary)
    log = tmp_path / "calls.jsonl"
    return {
        "path": str(gguf(tmp_path / "m.gguf")),
        "llama_server": {
            "binary": str(binary),
            "env": {"FAKE_LLAMA_LOG": str(log), **env},
            "start_timeout_s": 20,
            "stop_grace_s": 2,
        },
    }


def calls(tmp_path: Path) -> list[list[str]]:
    lines = (tmp_path / "calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


async def test_a_cuda_binary_starts_a_gpu_slot_with_the_lease_derived_flags(
    tmp_path: Path,
) -> None:
    entry = fake_entry(tmp_path, FAKE_LLAMA_FIT="1", FAKE_LLAMA_DEVICES=H200)
    backend = create_backend("llama_server", "m", entry, log_dir=tmp_path, budget=ONE_GPU)
    await backend.start()
    try:
        served = calls(tmp_path)[-1]
        assert flag(served, "--ctx-size") == "2048"
        assert flag(served, "--n-gpu-layers") == "all"
        assert flag(served, "--fit") == "off"
    finally:
        await backend.stop()
    assert [c[0] for c in calls(tmp_path)[:2]] == ["--help", "--list-devices"]


def rebuild(binary: Path) -> None:
    binary.write_text(binary.read_text() + "\n# rebuilt\n")


async def test_each_binary_is_probed_once(tmp_path: Path) -> None:
    entry = fake_entry(tmp_path, FAKE_LLAMA_DEVICES=H200)
    for _ in range(2):
        backend = create_backend("llama_server", "m", entry, log_dir=tmp_path, budget=ONE_GPU)
        await backend.start()
        await backend.stop()
    probes = [c for c in calls(tmp_path) if c[0] in ("--help", "--list-devices")]
    assert probes == [["--help"], ["--list-devices"]]
    served = calls(tmp_path)[-1]
    assert flag(served, "--fit") is None  # this binary's --help has no --fit
    rebuild(Path(entry["llama_server"]["binary"]))  # a new build is asked again
    binary = entry["llama_server"]["binary"]
    env = {"FAKE_LLAMA_LOG": str(tmp_path / "calls.jsonl")}
    await probe_llama_server(binary, env)
    assert [c for c in calls(tmp_path) if c[0] == "--help"] == [["--help"], ["--help"]]


async def test_a_cpu_only_binary_fails_a_gpu_slot_before_any_process_starts(
    tmp_path: Path,
) -> None:
    entry = fake_entry(tmp_path)  # lists no device
    backend = LlamaServerBackend(
        "m", LlamaServerOptions.from_manifest("m", entry), log_dir=tmp_path, budget=ONE_GPU
    )
    with pytest.raises(BackendStartError, match="CUDA build"):
        await backend.start()
    assert backend.state is BackendState.FAILED
    assert backend.pid is None
    assert all(c[0] in ("--help", "--list-devices") for c in calls(tmp_path))


async def test_a_ram_slot_does_not_ask_for_devices(tmp_path: Path) -> None:
    entry = fake_entry(tmp_path)
    backend = create_backend("llama_server", "m", entry, log_dir=tmp_path, budget=RAM)
    await backend.start()
    await backend.stop()
    assert ["--list-devices"] not in calls(tmp_path)
    assert flag(calls(tmp_path)[-1], "--n-gpu-layers") == "0"


# -- llama_server: the real CPU-only binary -------------------------------------------------


@pytest.mark.slow
async def test_the_real_cpu_build_serves_a_ram_slot_and_refuses_a_gpu_slot(
    smollm_entry: dict[str, Any], tmp_path: Path
) -> None:
    entry = {**smollm_entry, "context_size": None}
    refused = create_backend("llama_server", "m", entry, log_dir=tmp_path, budget=ONE_GPU)
    with pytest.raises(BackendStartError, match="lists no GPU device"):
        await refused.start()

    options = LlamaServerOptions.from_manifest("m", entry)
    backend = LlamaServerBackend(
        "m", options, gpus=(), log_dir=tmp_path, budget=LeaseBudget(ram_mb=600)
    )
    await backend.start()
    try:
        assert backend.pid is not None
        cmdline = psutil.Process(backend.pid).cmdline()
        assert flag(cmdline, "--ctx-size") == "4096"  # the default, within SmolLM2's 8192
        assert flag(cmdline, "--n-gpu-layers") == "0"
        assert flag(cmdline, "--fit") == "off"
        answer = await backend.chat(
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        )
        assert answer["choices"]
    finally:
        await backend.stop()


# -- vllm_serve ------------------------------------------------------------------------------


def vllm(table: dict[str, Any] | None = None) -> VllmServeOptions:
    return VllmServeOptions.from_manifest("m", {"path": "org/m", "vllm_serve": table or {}})


def test_vllm_uses_the_leased_share_of_its_gpu() -> None:
    argv = VllmServeBackend("m", vllm(), gpus=(0,), budget=ONE_GPU).command(1)
    assert flag(argv, "--gpu-memory-utilization") == "0.25"


def test_a_split_vllm_slot_uses_the_smallest_share_rounded_down() -> None:
    argv = VllmServeBackend("m", vllm(), gpus=(0, 1), budget=SPLIT).command(1)
    # 8000 of 24000 is 0.333..., 8000 of 16000 is 0.5: the smaller, rounded down
    assert flag(argv, "--gpu-memory-utilization") == "0.333"
    assert flag(argv, "--tensor-parallel-size") == "2"


@pytest.mark.parametrize(
    "table", [{"gpu_memory_utilization": 0.8}, {"kv_cache_memory_bytes": 1 << 30}]
)
def test_vllm_keeps_the_manifests_own_memory_setting(table: dict[str, Any]) -> None:
    argv = VllmServeBackend("m", vllm(table), gpus=(0,), budget=ONE_GPU).command(1)
    assert argv.count("--gpu-memory-utilization") == (1 if "gpu_memory_utilization" in table else 0)
    if "gpu_memory_utilization" in table:
        assert flag(argv, "--gpu-memory-utilization") == "0.8"


def test_vllm_without_a_gpu_lease_passes_no_utilization() -> None:
    assert "--gpu-memory-utilization" not in VllmServeBackend("m", vllm()).command(1)
    ram = VllmServeBackend("m", vllm(), budget=RAM).command(1)
    assert "--gpu-memory-utilization" not in ram


# -- diffusers and the CUDA cap ---------------------------------------------------------------


def diffusers() -> DiffusersOptions:
    return DiffusersOptions.from_manifest("m", {"path": "/models/pipe"})


def test_the_diffusers_worker_gets_each_devices_share_as_its_process_numbers_it() -> None:
    argv = DiffusersBackend("m", diffusers(), gpus=(0, 1), budget=SPLIT).command(1)
    fractions = parse_fractions(flag(argv, "--memory-fractions"))
    assert fractions == {0: pytest.approx(8000 / 24_000, abs=1e-6), 1: 0.5}
    assert fractions[0] <= 8000 / 24_000  # rounded down: never above the lease
    one = LeaseBudget(gpu_mb={3: 6000}, gpu_total_mb={3: 24_000})
    argv = DiffusersBackend("m", diffusers(), gpus=(3,), budget=one).command(1)
    assert flag(argv, "--memory-fractions") == "0=0.25"  # GPU 3 is the worker's cuda:0
    assert "--memory-fractions" not in DiffusersBackend("m", diffusers(), budget=RAM).command(1)


class FakeCuda:
    def __init__(self, available: bool = True) -> None:
        self.available = available
        self.calls: list[tuple[float, int]] = []

    def is_available(self) -> bool:
        return self.available

    def set_per_process_memory_fraction(self, fraction: float, device: int) -> None:
        self.calls.append((fraction, device))


def test_the_cap_is_set_on_each_device_only_with_cuda() -> None:
    cuda = FakeCuda()
    assert cap_cuda_memory({0: 0.25, 1: 0.5}, cuda) == {0: 0.25, 1: 0.5}
    assert cuda.calls == [(0.25, 0), (0.5, 1)]
    cpu = FakeCuda(available=False)
    assert cap_cuda_memory({0: 0.25}, cpu) == {}
    assert cpu.calls == []
    assert cap_cuda_memory({}, cuda) == {}


def test_fractions_travel_as_text_and_back() -> None:
    assert parse_fractions(format_fractions({1: 0.5, 0: 0.25})) == {0: 0.25, 1: 0.5}
    assert parse_fractions(None) == {}
    assert parse_fractions("") == {}
    with pytest.raises(ValueError, match="memory fraction"):
        parse_fractions("0=1.5")


def test_the_worker_applies_its_fractions_before_loading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torch

    from model_boss.backends import _diffusers_worker

    cuda = FakeCuda()
    order: list[str] = []

    def cap(fraction: float, device: int) -> None:
        order.append("cap")
        cuda.set_per_process_memory_fraction(fraction, device)

    monkeypatch.setattr(torch.cuda, "is_available", cuda.is_available)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", cap)

    def load(*args: object) -> object:
        order.append("load")
        raise RuntimeError("stop here")

    monkeypatch.setattr(_diffusers_worker, "load_pipeline", load)
    argv = ["--model", str(tmp_path), "--port", "0", "--memory-fractions", "0=0.25,1=0.5"]
    assert _diffusers_worker.main(argv) == 1
    assert order == ["cap", "cap", "load"]
    assert cuda.calls == [(0.25, 0), (0.5, 1)]
