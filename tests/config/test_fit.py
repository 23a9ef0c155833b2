"""Manifest values that cannot fit their lease fail when the file loads, naming file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from model_boss.config import (
    DEFAULT_CONTEXT,
    OVERHEAD_MB,
    context_for,
    estimate_vram_mb,
    gpu_layers_for,
    load_settings,
    read_gguf_info,
)
from model_boss.errors import ConfigError
from tests.config.conftest import WriteGguf


def load(tmp_path: Path, model: dict[str, Any], **service: Any) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"service": service, "models": {"m": model}}))
    load_settings(path, env={})


# A model of 2 MB outside its 4 layers, 1 MB in each: 6 MB of weights, and a KV cache of
# 4 layers * 2 heads * (64 + 64) dims * 2 bytes = 2 kB per token (4 MB for 2048 tokens).
def small(write_gguf: WriteGguf, context: int = 2048) -> Path:
    return write_gguf(
        layers=4, heads=8, kv_heads=2, embed=512, weight_mb=2, layer_mb=1, context=context
    )


def test_layer_weights_are_read_apart_from_the_rest(write_gguf: WriteGguf) -> None:
    info = read_gguf_info(small(write_gguf))
    assert info.layer_mb == 1.0
    assert info.other_weights_mb == 2.0


def test_the_assumed_context_is_the_default_capped_by_the_models_own(
    write_gguf: WriteGguf, tmp_path: Path
) -> None:
    assert context_for(small(write_gguf, context=2048)) == 2048
    assert context_for(write_gguf("long.gguf", context=131_072)) == DEFAULT_CONTEXT
    assert context_for(small(write_gguf), 512) == 512
    assert context_for(tmp_path / "model.safetensors") == DEFAULT_CONTEXT
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf")
    assert context_for(broken) == DEFAULT_CONTEXT


def test_all_layers_fit_exactly_when_the_budget_covers_the_estimate(
    write_gguf: WriteGguf,
) -> None:
    path = small(write_gguf)
    info = read_gguf_info(path)
    estimate = estimate_vram_mb(path, context_size=2048)
    assert estimate == 6 + 4 + OVERHEAD_MB
    assert gpu_layers_for(info, estimate, 2048) == 4
    assert gpu_layers_for(info, estimate - 1, 2048) == 3
    # overhead, 4 MB of KV cache and 2 MB outside the layers leave room for 2 layers
    assert gpu_layers_for(info, OVERHEAD_MB + 4 + 2 + 2, 2048) == 2
    assert gpu_layers_for(info, OVERHEAD_MB, 2048) == 0


def test_a_context_whose_kv_cache_overruns_vram_mb_fails_on_context_size(
    write_gguf: WriteGguf, tmp_path: Path
) -> None:
    model = {"path": str(small(write_gguf)), "vram_mb": 8, "context_size": 2048}
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, model)
    message = str(caught.value)
    assert "models.yaml: models.m.context_size:" in message
    assert "KV cache for 2048 tokens takes 4 MB" in message
    assert "vram_mb: 8 MB" in message
    load(tmp_path, {**model, "context_size": 1024})  # 6 MB + 2 MB fits


def test_the_default_context_overrunning_vram_mb_fails_on_vram_mb(
    write_gguf: WriteGguf, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"models\.yaml: models\.m\.vram_mb: .* 2048 tokens"):
        load(tmp_path, {"path": str(small(write_gguf)), "vram_mb": 9})


def test_a_relative_path_is_checked_under_models_root(
    write_gguf: WriteGguf, tmp_path: Path
) -> None:
    small(write_gguf)  # tmp_path / tiny.gguf
    with pytest.raises(ConfigError, match="context_size"):
        load(
            tmp_path,
            {"path": "tiny.gguf", "vram_mb": 8, "context_size": 2048},
            models_root=str(tmp_path),
        )


def test_more_gpu_layers_than_vram_mb_holds_fail_on_n_gpu_layers(
    write_gguf: WriteGguf, tmp_path: Path
) -> None:
    model = {"path": str(small(write_gguf)), "vram_mb": 6, "llama_server": {"n_gpu_layers": 3}}
    with pytest.raises(ConfigError, match=r"models\.m\.llama_server\.n_gpu_layers: 3 layers"):
        load(tmp_path, model)
    load(tmp_path, {**model, "llama_server": {"n_gpu_layers": 2}})  # 2 MB + 4 MB of KV


def test_a_ram_model_must_hold_the_whole_model_in_its_lease(
    write_gguf: WriteGguf, tmp_path: Path
) -> None:
    model = {"path": str(small(write_gguf)), "vram_mb": 9, "llama_server": {"n_gpu_layers": 0}}
    with pytest.raises(ConfigError, match="vram_mb"):
        load(tmp_path, model)
    load(tmp_path, {**model, "vram_mb": 10})


def test_a_missing_or_unreadable_model_file_is_not_checked(tmp_path: Path) -> None:
    load(tmp_path, {"path": str(tmp_path / "absent.gguf"), "vram_mb": 1})
    (tmp_path / "broken.gguf").write_bytes(b"junk")
    load(tmp_path, {"path": str(tmp_path / "broken.gguf"), "vram_mb": 1})


def test_vllm_utilization_beside_vram_mb_is_an_error(tmp_path: Path) -> None:
    model = {
        "backend": "vllm_serve",
        "path": "org/model",
        "vram_mb": 20_000,
        "vllm_serve": {"gpu_memory_utilization": 0.5},
    }
    with pytest.raises(
        ConfigError, match=r"models\.m\.vllm_serve\.gpu_memory_utilization: .*set one"
    ):
        load(tmp_path, model)
    del model["vram_mb"]
    load(tmp_path, model)


def test_a_vllm_kv_cache_larger_than_vram_mb_is_an_error(tmp_path: Path) -> None:
    model = {
        "backend": "vllm_serve",
        "path": "org/model",
        "vram_mb": 1000,
        "vllm_serve": {"kv_cache_memory_bytes": 2000 * 1024 * 1024},
    }
    with pytest.raises(ConfigError, match=r"kv_cache_memory_bytes: 2000 MB of KV cache"):
        load(tmp_path, model)
