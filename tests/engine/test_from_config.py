"""The manifest examples become engine models whose backends accept their entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_boss.backends import backend_options, models_dir
from model_boss.backends._demo_model import DEMO_MODEL_FILE
from model_boss.config import load_settings, parse_manifest
from model_boss.engine import DEMO_MODEL_ID, default_models, engine_models

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["manifest.yaml", "manifest.json", "manifest.toml"])
def test_examples_become_engine_models_their_backends_accept(name: str) -> None:
    settings = load_settings(EXAMPLES / name, env={})
    models = engine_models(settings)
    assert {m.model_id for m in models} == set(settings.models)
    for model in models:
        backend_options(model.backend, model.model_id, model.entry)  # raises ConfigError
        assert model.profile.vram_mb >= 1
        spec = settings.models[model.model_id]
        assert model.profile.pin == spec.pin
        assert model.profile.replica_max == spec.replica_max


def test_backend_tables_reach_the_backend() -> None:
    settings = load_settings(EXAMPLES / "manifest.yaml", env={})
    by_id = {m.model_id: m for m in engine_models(settings)}
    qwen = by_id["qwen3-vl-vllm"]
    assert qwen.entry["vllm_serve"]["max_model_len"] == 8192
    assert qwen.modalities == frozenset({"text", "image"})
    assert qwen.profile.enabled is False
    smol = by_id["smollm2-135m"]
    assert Path(smol.entry["path"]).is_absolute()


def test_the_default_manifest_serves_the_demo_model_once_pulled(tmp_path: Path) -> None:
    assert default_models(tmp_path) == {}
    (tmp_path / DEMO_MODEL_FILE).write_bytes(b"GGUF")
    manifest = default_models(tmp_path)
    assert list(manifest) == [DEMO_MODEL_ID]
    spec = parse_manifest(manifest, "<default>")[DEMO_MODEL_ID]
    assert spec.backend == "llama_server"


def test_demo_model_is_in_the_cache() -> None:
    # `make setup` fetches it; the e2e tests serve it.
    assert (models_dir() / DEMO_MODEL_FILE).stat().st_size > 50_000_000


def test_embedding_models_are_started_for_embeddings() -> None:
    settings = load_settings(EXAMPLES / "manifest.yaml", env={})
    by_id = {m.model_id: m for m in engine_models(settings)}
    assert by_id["nomic-embed"].entry["llama_server"]["embeddings"] is True
    assert "embeddings" not in by_id["smollm2-135m"].entry.get("llama_server", {})
