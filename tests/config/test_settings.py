from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w
import yaml

from model_boss.config import (
    ENV_LOCAL_SETTINGS,
    ENV_SETTINGS,
    deep_merge,
    load_settings,
    parse_manifest,
    vram_for,
)
from model_boss.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SETTINGS = {
    "service": {"port": 9000},
    "models": {
        "chat": {"path": "chat.gguf", "category": "llm", "vram_mb": 4000, "pin": True},
        "art": {"path": "art.safetensors", "category": "diffusion", "vram_mb": 10000},
    },
}


def write(path: Path, data: dict[str, object]) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(data))
    elif path.suffix == ".toml":
        path.write_text(tomli_w.dumps(data))
    else:
        path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml", ".toml"])
def test_each_file_format_loads_the_same_settings(tmp_path: Path, suffix: str) -> None:
    s = load_settings(write(tmp_path / f"settings{suffix}", SETTINGS), env={})
    assert s.service.port == 9000
    assert set(s.models) == {"chat", "art"}
    assert s.models["chat"].pin
    assert s.models["chat"].backend == "llama_server"  # inferred from the category
    assert s.models["art"].backend == "diffusers"


def test_local_override_wins_per_key_deeply(tmp_path: Path) -> None:
    base = write(tmp_path / "settings.json", SETTINGS)
    local = write(
        tmp_path / "mine.yaml",
        {"service": {"host": "0.0.0.0"}, "models": {"chat": {"vram_mb": 4500}, "art": None}},
    )
    s = load_settings(base, local, env={})
    assert (s.service.host, s.service.port) == ("0.0.0.0", 9000)
    assert s.models["chat"].vram_mb == 4500
    assert s.models["chat"].pin  # untouched keys survive
    assert "art" not in s.models  # null removes
    assert s.sources == (str(base), str(local))


def test_deep_merge_replaces_lists_and_scalars() -> None:
    merged = deep_merge({"a": {"b": [1, 2], "c": 1}}, {"a": {"b": [3]}})
    assert merged == {"a": {"b": [3], "c": 1}}


def test_env_vars_name_the_files(tmp_path: Path) -> None:
    base = write(tmp_path / "a.toml", SETTINGS)
    local = write(tmp_path / "b.json", {"service": {"port": 9100}})
    s = load_settings(env={ENV_SETTINGS: str(base), ENV_LOCAL_SETTINGS: str(local)})
    assert s.service.port == 9100


def test_a_local_file_beside_the_base_is_merged(tmp_path: Path) -> None:
    base = write(tmp_path / "settings.json", SETTINGS)
    write(tmp_path / "local.yaml", {"service": {"port": 9200}})
    assert load_settings(base, env={}).service.port == 9200


def test_no_files_give_defaults() -> None:
    s = load_settings(env={})
    assert (s.service.host, s.service.port, dict(s.models)) == ("127.0.0.1", 8210, {})


def test_older_manifest_spellings_are_accepted() -> None:
    models = parse_manifest(
        {"m": {"model_path": "m.gguf", "chatTemplate": "alpaca", "enable_thinking": True}},
        "x.json",
    )
    assert (models["m"].path, models["m"].chat_template, models["m"].thinking) == (
        "m.gguf",
        "alpaca",
        True,
    )
    assert parse_manifest({"m": {"path": "m", "backend": "llama-server"}}, "x").keys() == {"m"}


def test_backend_table_is_kept_as_options() -> None:
    models = parse_manifest({"m": {"path": "m.gguf", "llama_server": {"n_ctx": 4096}}}, "x")
    assert models["m"].options == {"n_ctx": 4096}


def test_llm_pool_style_flat_backend_options_are_accepted() -> None:
    entry = {"path": "m.gguf", "llama_server_n_ctx": 4096, "llama_server_flash_attn": "on"}
    models = parse_manifest({"m": entry}, "x")
    assert models["m"].options == {"n_ctx": 4096, "flash_attn": "on"}


BAD_MODELS = [
    ({"vram_mb": -5}, "models.foo.vram_mb: must be a positive integer"),
    ({"vram_mb": "lots"}, "models.foo.vram_mb: must be a positive integer"),
    ({"category": "llm-ish"}, "models.foo.category: must be one of llm, embedding"),
    ({"backend": "ollama"}, "models.foo.backend: must be one of llama_server"),
    ({"pin": "yes"}, "models.foo.pin: must be true or false"),
    ({"stay_warm": -1}, "models.foo.stay_warm: must be a number of seconds >= 0"),
    ({"endpoints": "chat"}, "models.foo.endpoints: must be a list of strings"),
    ({"replicas": 3, "replica_max": 2}, "models.foo.replica_max: must be >= replicas"),
    ({"target_inflight": 0}, "models.foo.target_inflight: must be a positive integer"),
    ({"vram": 4000}, "models.foo.vram: unknown key (did you mean 'vram_mb'?)"),
    ({"vllm_serve": {}}, "models.foo.vllm_serve: is a table for backend vllm_serve"),
    ({"llama_server": 5}, "models.foo.llama_server: must be a table of backend options"),
    ({"vllm_serve_max_model_len": 8192}, "models.foo.vllm_serve_max_model_len: is an option for"),
]


@pytest.mark.parametrize(("patch", "message"), BAD_MODELS)
def test_each_kind_of_manifest_error_names_the_file_and_key_path(
    tmp_path: Path, patch: dict[str, object], message: str
) -> None:
    entry: dict[str, object] = {"path": "foo.gguf", **patch}
    f = write(tmp_path / "settings.yaml", {"models": {"foo": entry}})
    with pytest.raises(ConfigError) as err:
        load_settings(f, env={})
    assert str(err.value).startswith(f"{f}: {message}")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"models": {"foo": {"category": "llm"}}}, "models.foo.path: is required"),
        ({"models": {"foo": "chat.gguf"}}, "models.foo: must be a table"),
        ({"models": ["foo"]}, "models: must be a table of models"),
        ({"service": {"port": 70000}}, "service.port: must be an integer from 1 to 65535"),
        ({"service": {"prot": 1}}, "service.prot: unknown key"),
        ({"servce": {}}, "servce: unknown section"),
    ],
)
def test_structural_errors_name_the_file_and_key_path(
    tmp_path: Path, data: dict[str, object], message: str
) -> None:
    f = write(tmp_path / "settings.json", data)
    with pytest.raises(ConfigError, match="^" + str(f).replace(".", r"\.") + ": " + message):
        load_settings(f, env={})


def test_error_in_the_local_override_names_the_local_file(tmp_path: Path) -> None:
    base = write(tmp_path / "settings.json", SETTINGS)
    local = write(tmp_path / "mine.toml", {"models": {"chat": {"vram_mb": 0}}})
    with pytest.raises(ConfigError, match=r"mine\.toml: models\.chat\.vram_mb: must be a positive"):
        load_settings(base, local, env={})


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.json", "{not json", "not valid JSON"),
        ("bad.yaml", "a: [1, 2", "not valid YAML"),
        ("bad.toml", "a = ", "not valid TOML"),
        ("list.yaml", "- 1\n- 2\n", "the top level must be a mapping"),
        ("settings.ini", "[x]", "unsupported format"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path: Path, name: str, text: str, message: str) -> None:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError, match=f"{name}: {message}"):
        load_settings(f, env={})


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read"):
        load_settings(tmp_path / "nope.yaml", env={})


@pytest.mark.parametrize("name", ["manifest.yaml", "manifest.json", "manifest.toml"])
def test_the_readme_examples_load(name: str) -> None:
    s = load_settings(EXAMPLES / name, env={})
    assert s.models
    assert all(m.backend for m in s.models.values())


def test_the_example_override_applies(tmp_path: Path) -> None:
    s = load_settings(EXAMPLES / "manifest.yaml", EXAMPLES / "override.yaml", env={})
    assert s.service.port == 8311
    assert s.models["ministral-3b-instruct"].vram_mb == 4400
    assert not s.models["animagine-xl-3.1"].enabled
    assert s.models["qwen3-vl-vllm"].options["model"] == "Qwen/Qwen3-VL-8B-Instruct"


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"llama_server": {"cache_type_k": "q9_0"}}, "llama_server.cache_type_k"),
        ({"llama_server": {"cache_type_v": 8}}, "llama_server.cache_type_v"),
        ({"llama_server_cache_type_k": "q9_0"}, "llama_server_cache_type_k"),
    ],
)
def test_unknown_kv_cache_type_names_file_and_key(
    tmp_path: Path, patch: dict[str, object], key: str
) -> None:
    # The memory estimate reads the cache types; a bad one must fail at load, not at serve.
    f = write(tmp_path / "s4.yaml", {"models": {"g": {"path": "g.gguf", **patch}}})
    with pytest.raises(ConfigError) as err:
        load_settings(f, env={})
    assert str(err.value).startswith(f"{f}: models.g.{key}: must be one of f32, f16, bf16, q8_0")


@pytest.mark.parametrize("backend", ["vllm_serve", "simulated"])
def test_model_without_path_or_vram_mb_names_file_and_key(tmp_path: Path, backend: str) -> None:
    f = write(tmp_path / "s3.yaml", {"models": {"v": {"backend": backend}}})
    with pytest.raises(ConfigError) as err:
        load_settings(f, env={})
    assert str(err.value) == (
        f"{f}: models.v.vram_mb: is required for backend {backend}"
        " when there is no path to estimate from"
    )


def test_vram_mb_or_a_remote_backend_stands_in_for_a_path(
    tmp_path: Path,
) -> None:
    f = write(
        tmp_path / "settings.yaml",
        {
            "models": {
                "v": {"backend": "vllm_serve", "vram_mb": 9000},
                "r": {"backend": "openai_remote"},
                "g": {"path": "g.gguf", "vram_mb": 900, "llama_server": {"cache_type_k": "q8_0"}},
            }
        },
    )
    models = load_settings(f, env={}).models
    assert {m: vram_for(spec) for m, spec in models.items()} == {"v": 9000, "r": 0, "g": 900}
