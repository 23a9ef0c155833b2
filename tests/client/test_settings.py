"""Where the client looks for the coordinator, and what the package exports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import model_boss.client
from model_boss.client import (
    DEFAULT_URL,
    InferenceClient,
    ModelBoss,
    SyncInferenceClient,
    SyncModelBoss,
    resolve_base_url,
)
from tests.api.conftest import Server


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("MODEL_BOSS_URL", "COORDINATOR_URL", "MODEL_BOSS_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_base_url_resolution_order(no_env: pytest.MonkeyPatch) -> None:
    assert resolve_base_url() == DEFAULT_URL == "http://localhost:8210"
    no_env.setenv("COORDINATOR_URL", "http://coordinator:8210/")
    assert resolve_base_url() == "http://coordinator:8210"
    no_env.setenv("MODEL_BOSS_URL", "http://boss:9000")
    assert resolve_base_url() == "http://boss:9000"
    assert resolve_base_url("http://given:1") == "http://given:1"
    no_env.setenv("MODEL_BOSS_URL", "  ")
    assert resolve_base_url() == "http://coordinator:8210"


async def test_every_client_takes_its_url_from_the_environment(
    no_env: pytest.MonkeyPatch, coordinator: Server
) -> None:
    no_env.setenv("COORDINATOR_URL", "http://127.0.0.1:1")
    no_env.setenv("MODEL_BOSS_URL", coordinator.url)
    async with InferenceClient() as client:
        assert client.base_url == coordinator.url
        assert (await client.health())["status"] == "ok"
    async with ModelBoss("a") as boss:
        assert boss.client.base_url == coordinator.url
    with SyncInferenceClient() as sync_client:
        assert sync_client.base_url == coordinator.url
    with SyncModelBoss("a") as sync_boss:
        assert sync_boss.client.base_url == coordinator.url


def test_all_lists_the_public_api() -> None:
    assert sorted(model_boss.client.__all__) == sorted(
        [
            "DEFAULT_URL",
            "X_FIELDS",
            "AuthenticationFailed",
            "ClientError",
            "CoordinatorError",
            "CoordinatorTimeout",
            "CoordinatorUnavailable",
            "InferenceClient",
            "InvalidRequest",
            "ModelBoss",
            "ModelNotFound",
            "ModelUnavailable",
            "QueueFull",
            "SyncInferenceClient",
            "SyncModelBoss",
            "UnexpectedResponse",
            "resolve_api_key",
            "resolve_base_url",
        ]
    )
    for name in model_boss.client.__all__:
        assert hasattr(model_boss.client, name), name


_SERVER_LAYERS = ("api", "engine", "scheduling", "backends", "leases", "sim", "loaders")


def test_the_client_imports_no_server_code() -> None:
    package = Path(model_boss.client.__file__).parent
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                assert not (
                    parts[0] == "model_boss" and len(parts) > 1 and parts[1] in _SERVER_LAYERS
                ), f"{path.name} imports {name}"
                assert parts[0] not in ("fastapi", "starlette", "uvicorn"), f"{path.name}: {name}"
    code = (
        "import sys, model_boss.client; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'uvicorn', 'starlette') or m.startswith(('model_boss.api', "
        "'model_boss.engine', 'model_boss.scheduling', 'model_boss.backends'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
