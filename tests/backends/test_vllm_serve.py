"""vllm_serve: argument mapping, and the start-up protocol against a fake `vllm serve`.

The real vLLM cannot run on these CPU-only machines; fakes/vllm behaves as `vllm serve`
does at start-up (port closed while loading, then /health 200 and /v1/models listing it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from model_boss.backends import (
    BackendStartError,
    BackendStartTimeout,
    BackendState,
    VllmServeBackend,
    VllmServeOptions,
)
from model_boss.errors import ConfigError
from tests.backends.conftest import FAKES, environment_names, port_closed, process_gone

FAKE_VLLM = str(FAKES / "vllm")


def test_every_vllm_field_maps_to_its_argument() -> None:
    entry = {
        "backend": "vllm_serve",
        "context_size": 4096,  # max_model_len wins over it
        "vllm_serve": {
            "model": "/models/nvidia/Gemma-4-26B-A4B-NVFP4",
            "dtype": "auto",
            "gpu_memory_utilization": 0.01,
            "kv_cache_memory_bytes": 2147483648,
            "kv_cache_dtype": "fp8",
            "max_model_len": 8192,
            "tensor_parallel_size": 2,
            "trust_remote_code": True,
            "limit_mm_per_prompt": {"image": 1},
            "mm_processor_kwargs": {"max_pixels": 4014080},
            "speculative_method": "mtp",
            "speculative_model": "google/gemma-4-26B-A4B-it-assistant",
            "num_speculative_tokens": 8,
            "speculative_config": {"attention_backend": "triton_attn"},
            "binary": "/opt/vllm/bin/vllm",
            "library_path": ["/opt/cuda/lib64"],
            "env": {"VLLM_USE_FLASHINFER_SAMPLER": "0"},
            "extra_args": ["--max-num-seqs", "1"],
            "start_timeout_s": 900.0,
        },
    }
    options = VllmServeOptions.from_manifest("gemma4", entry)

    assert options.command("/opt/vllm/bin/vllm", 9000) == [
        "/opt/vllm/bin/vllm", "serve", "/models/nvidia/Gemma-4-26B-A4B-NVFP4",
        "--host", "127.0.0.1",
        "--port", "9000",
        "--served-model-name", "gemma4",
        "--dtype", "auto",
        "--gpu-memory-utilization", "0.01",
        "--kv-cache-memory-bytes", "2147483648",
        "--kv-cache-dtype", "fp8",
        "--max-model-len", "8192",
        "--tensor-parallel-size", "2",
        "--limit-mm-per-prompt", '{"image":1}',
        "--mm-processor-kwargs", '{"max_pixels":4014080}',
        "--speculative-config",
        '{"attention_backend":"triton_attn","method":"mtp",'
        '"model":"google/gemma-4-26B-A4B-it-assistant","num_speculative_tokens":8}',
        "--trust-remote-code",
    ]  # fmt: skip
    assert options.process.extra_args == ("--max-num-seqs", "1")
    assert options.process.library_path == ("/opt/cuda/lib64",)
    assert options.process.env == {"VLLM_USE_FLASHINFER_SAMPLER": "0"}
    assert options.process.start_timeout_s == 900.0


def test_model_defaults_to_path_and_max_model_len_to_context_size() -> None:
    options = VllmServeOptions.from_manifest("m", {"path": "org/model", "context_size": 2048})
    assert options.command("vllm", 1) == [
        "vllm", "serve", "org/model", "--host", "127.0.0.1", "--port", "1",
        "--served-model-name", "m", "--max-model-len", "2048",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"vllm_serve": {}}, "vllm_serve.model: is required"),
        (
            {"path": "m", "vllm_serve": {"gpu_memory_utilization": 0}},
            "gpu_memory_utilization: must be > 0",
        ),
        ({"path": "m", "vllm_serve": {"gpu_memory_utilization": 1.5}}, "must be <= 1"),
        ({"path": "m", "vllm_serve": {"dtype": "fp7"}}, "vllm_serve.dtype: expected one of"),
        (
            {"path": "m", "vllm_serve": {"limit_mm_per_prompt": 1}},
            "vllm_serve.limit_mm_per_prompt: expected a table",
        ),
        ({"path": "m", "vllm_serve": {"env": {"A": None}}}, "vllm_serve.env.A: expected a string"),
        (
            {"path": "m", "vllm_serve": {"tensor_parallel": 2}},
            "vllm_serve.tensor_parallel: unknown key",
        ),
    ],
)
def test_bad_vllm_values_are_config_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VllmServeOptions.from_manifest("m", entry)


def test_tensor_parallel_larger_than_the_slot_is_refused() -> None:
    options = VllmServeOptions.from_manifest(
        "m", {"path": "m", "vllm_serve": {"tensor_parallel_size": 2}}
    )
    with pytest.raises(ConfigError, match="needs 2 GPUs, the slot has 1"):
        VllmServeBackend("m", options, gpus=(0,))


def test_a_slot_split_over_gpus_spreads_the_model_over_all_of_them() -> None:
    plain = VllmServeOptions.from_manifest("m", {"path": "m", "vllm_serve": {"binary": "v"}})
    split = VllmServeBackend("m", plain, gpus=(0, 1, 2)).command(8000)
    assert split[-2:] == ["--tensor-parallel-size", "3"]
    assert "--tensor-parallel-size" not in VllmServeBackend("m", plain, gpus=(1,)).command(8000)
    assert "--tensor-parallel-size" not in VllmServeBackend("m", plain).command(8000)
    chosen = VllmServeOptions.from_manifest(
        "m", {"path": "m", "vllm_serve": {"binary": "v", "tensor_parallel_size": 2}}
    )
    argv = VllmServeBackend("m", chosen, gpus=(0, 1, 2)).command(8000)
    assert argv.count("--tensor-parallel-size") == 1
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"  # the manifest's choice


def fake_entry(tmp_path: Path, **env: str) -> dict[str, Any]:
    return {
        "path": "org/tiny-model",
        "vllm_serve": {
            "binary": FAKE_VLLM,
            "max_model_len": 1024,
            "library_path": ["/opt/vllm/lib"],
            "env": {"FAKE_VLLM_RECORD": str(tmp_path / "record.json"), **env},
            "extra_args": ["--max-num-seqs", "1"],
            "start_timeout_s": 20,
            "stop_grace_s": 5,
        },
    }


async def test_start_up_protocol_requests_and_stop_against_the_fake(tmp_path: Path) -> None:
    entry = fake_entry(tmp_path, FAKE_VLLM_LOAD_S="0.8", VLLM_TEST_FLAG="1")
    backend = VllmServeBackend(
        "tiny", VllmServeOptions.from_manifest("tiny", entry), gpus=(0, 1), log_dir=tmp_path
    )
    started = time.monotonic()
    await backend.start()
    try:
        # Ready only after the port opened, which the fake does after "loading".
        assert time.monotonic() - started >= 0.8
        assert backend.state is BackendState.READY
        record = json.loads((tmp_path / "record.json").read_text())
        assert record["argv"] == [
            "serve", "org/tiny-model", "--host", "127.0.0.1", "--port", str(backend.port),
            "--served-model-name", "tiny", "--max-model-len", "1024",
            "--tensor-parallel-size", "2", "--max-num-seqs", "1",
        ]  # fmt: skip
        assert record["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"
        assert record["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        assert record["env"]["LD_LIBRARY_PATH"].startswith("/opt/vllm/lib")
        assert record["env"]["VLLM_TEST_FLAG"] == "1"
        assert (await backend.health()).ok

        answer = await backend.chat(
            {"model": "whatever", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert answer["choices"][0]["message"]["content"] == "fake vllm says hi"
        events = [e async for e in backend.chat_stream({"messages": []})]
        assert events[-1] == b"data: [DONE]\n\n"
        pieces = [json.loads(e[6:])["choices"][0]["delta"]["content"] for e in events[:-1]]
        assert "".join(pieces) == "fake vllm says hi"
    finally:
        port = backend.port
        await backend.stop()
    assert process_gone(record["pid"])
    assert port is not None
    assert await port_closed(port)
    assert "Application startup complete" in (tmp_path / "tiny.vllm_serve.log").read_text()


async def test_a_failing_vllm_start_is_reported_with_its_own_error(tmp_path: Path) -> None:
    entry = fake_entry(tmp_path, FAKE_VLLM_FAIL="CUDA out of memory while loading weights")
    backend = VllmServeBackend(
        "tiny", VllmServeOptions.from_manifest("tiny", entry), log_dir=tmp_path
    )
    with pytest.raises(BackendStartError, match="CUDA out of memory while loading weights"):
        await backend.start()
    assert backend.state is BackendState.FAILED


async def test_a_vllm_that_never_lists_its_model_times_out_and_is_stopped(tmp_path: Path) -> None:
    entry = fake_entry(tmp_path, FAKE_VLLM_NO_MODELS="1")
    entry["vllm_serve"]["start_timeout_s"] = 1.5
    backend = VllmServeBackend(
        "tiny", VllmServeOptions.from_manifest("tiny", entry), log_dir=tmp_path
    )
    with pytest.raises(BackendStartTimeout):
        await backend.start()
    record = json.loads((tmp_path / "record.json").read_text())
    assert process_gone(record["pid"])


async def test_vllm_gets_its_own_key_in_its_environment_never_on_its_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_BOSS_API_KEYS", "user-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-remote")
    entry = fake_entry(tmp_path)
    backend = VllmServeBackend(
        "tiny", VllmServeOptions.from_manifest("tiny", entry), log_dir=tmp_path
    )
    await backend.start()
    try:
        record = json.loads((tmp_path / "record.json").read_text())
        key = backend.api_key
        assert key
        assert record["env"]["VLLM_API_KEY"] == key
        assert not any(key in arg for arg in record["argv"])
        names = environment_names(record["pid"])
        assert "MODEL_BOSS_API_KEYS" not in names
        assert "OPENAI_API_KEY" not in names
        url = f"http://127.0.0.1:{backend.port}/v1/models"
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as response:
                assert response.status == 401
        answer = await backend.chat({"messages": [{"role": "user", "content": "hi"}]})
        assert answer["choices"][0]["message"]["content"] == "fake vllm says hi"
    finally:
        await backend.stop()
