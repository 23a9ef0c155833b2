"""Old key spellings in a base file and its local override: the override wins per key
whatever spelling each file used, and errors name the file and the key as written there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from model_boss.config import Settings, load_settings, parse_manifest
from model_boss.errors import ConfigError


def load(tmp_path: Path, base: dict[str, Any], local: dict[str, Any]) -> Settings:
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump({"models": {"foo": base}}))
    (tmp_path / "local.yaml").write_text(yaml.safe_dump({"models": {"foo": local}}))
    return load_settings(tmp_path / "settings.yaml", env={})


def error(tmp_path: Path, base: dict[str, Any], local: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, base, local)
    return str(err.value).replace(f"{tmp_path}/", "")


def test_alias_in_override_wins_over_canonical_key_in_base(tmp_path: Path) -> None:
    spec = load(tmp_path, {"path": "a.gguf", "vram_mb": 1}, {"model_path": "b.gguf"})
    assert spec.models["foo"].path == "b.gguf"


@pytest.mark.parametrize(
    ("base", "local", "field", "value"),
    [
        ({"model_path": "a.gguf"}, {"path": "b.gguf"}, "path", "b.gguf"),
        ({"path": "a", "stay_warm": 60}, {"stay_warm_s": 5}, "stay_warm", 5.0),
        ({"path": "a", "stay_warm_s": 60}, {"stay_warm": 5}, "stay_warm", 5.0),
        ({"path": "a", "chat_template": "chatml"}, {"chatTemplate": "raw"}, "chat_template", "raw"),
        ({"path": "a", "enable_thinking": True}, {"thinking": False}, "thinking", False),
    ],
)
def test_override_wins_per_key_whatever_spelling_each_file_used(
    tmp_path: Path, base: dict[str, Any], local: dict[str, Any], field: str, value: object
) -> None:
    spec = load(tmp_path, {"vram_mb": 1, **base}, local).models["foo"]
    assert getattr(spec, field) == value


def test_flat_backend_option_in_override_wins_over_the_table_in_base(tmp_path: Path) -> None:
    base = {"path": "a.gguf", "llama_server": {"n_ctx": 4096, "cache_type_k": "q8_0"}}
    spec = load(tmp_path, base, {"llama_server_n_ctx": 8192}).models["foo"]
    assert spec.options == {"n_ctx": 8192, "cache_type_k": "q8_0"}


def test_backend_table_in_override_wins_over_flat_option_in_base(tmp_path: Path) -> None:
    base = {"path": "a.gguf", "llama_server_n_ctx": 4096, "llama_server_parallel": 2}
    spec = load(tmp_path, base, {"llama_server": {"n_ctx": 8192}}).models["foo"]
    assert spec.options == {"n_ctx": 8192, "parallel": 2}


def test_null_under_an_alias_in_override_removes_the_base_key(tmp_path: Path) -> None:
    base = {"backend": "vllm_serve", "path": "org/model", "vram_mb": 9000}
    assert load(tmp_path, base, {"model_path": None}).models["foo"].path is None
    flat = {"path": "a.gguf", "llama_server": {"n_ctx": 4096, "parallel": 2}}
    assert load(tmp_path, flat, {"llama_server_n_ctx": None}).models["foo"].options == {
        "parallel": 2
    }


@pytest.mark.parametrize(
    ("base", "local", "message"),
    [
        (
            {"stay_warm": 60},
            {"stay_warm_s": -1},
            "local.yaml: models.foo.stay_warm_s: must be a number of seconds >= 0 (got -1)",
        ),
        ({"path": "a.gguf"}, {"model_path": ""}, "local.yaml: models.foo.model_path: must be a"),
        (
            {"llama_server": {"cache_type_k": "q8_0"}},
            {"llama_server_cache_type_k": "q9_0"},
            "local.yaml: models.foo.llama_server_cache_type_k: must be one of f32, f16",
        ),
        (
            {"stay_warm_s": -1},
            {"vram_mb": 4000},
            "settings.yaml: models.foo.stay_warm_s: must be a number of seconds >= 0",
        ),
    ],
)
def test_bad_value_names_its_file_and_the_key_as_written_there(
    tmp_path: Path, base: dict[str, Any], local: dict[str, Any], message: str
) -> None:
    assert error(tmp_path, {"path": "a.gguf", **base}, local).startswith(message)


def test_key_removed_under_an_alias_in_override_names_the_override(tmp_path: Path) -> None:
    message = error(tmp_path, {"path": "a.gguf", "vram_mb": 1}, {"model_path": None})
    assert message == "local.yaml: models.foo.model_path: is required for backend llama_server"


def test_missing_key_of_a_model_only_in_the_override_names_the_override(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump({"models": {}}))
    (tmp_path / "local.yaml").write_text(yaml.safe_dump({"models": {"bar": {"pin": True}}}))
    with pytest.raises(ConfigError, match=r"local\.yaml: models\.bar\.path: is required"):
        load_settings(tmp_path / "settings.yaml", env={})


@pytest.mark.parametrize(
    ("local", "message"),
    [
        ({"model_path": "b", "path": "c"}, "local.yaml: models.foo.path: duplicates 'model_path'"),
        (
            {"llama_server": {"n_ctx": 1}, "llama_server_n_ctx": 2},
            "local.yaml: models.foo.llama_server_n_ctx: duplicates 'llama_server.n_ctx'",
        ),
    ],
)
def test_two_spellings_of_one_key_in_one_file_name_that_file(
    tmp_path: Path, local: dict[str, Any], message: str
) -> None:
    assert error(tmp_path, {"path": "a.gguf", "vram_mb": 1}, local) == message


def test_an_error_under_an_old_spelling_in_one_mapping_names_the_key_as_written() -> None:
    with pytest.raises(ConfigError, match=r"^x\.json: models\.m\.stay_warm_s: must be"):
        parse_manifest({"m": {"path": "m.gguf", "stay_warm_s": "long"}}, "x.json")
