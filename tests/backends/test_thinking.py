"""The manifest's ``thinking`` (``enable_thinking``) reaches the backend's chat template.

llama-server and vLLM both take ``chat_template_kwargs`` on a chat request; the manifest's
value is the default there and a request's own ``enable_thinking`` wins. The request path is
shared by both kinds (ProcessBackend); it is driven here against the fake ``vllm serve``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from model_boss.backends import LlamaServerOptions, VllmServeBackend, VllmServeOptions
from model_boss.config import ServiceSettings, Settings, parse_manifest
from model_boss.engine import engine_models
from tests.backends.conftest import FAKES

ECHO = {"messages": [{"role": "user", "content": "echo chat_template_kwargs"}]}


def test_enable_thinking_in_the_manifest_reaches_each_backends_options(tmp_path: Path) -> None:
    manifest = {
        "qwen": {"path": "q.gguf", "vram_mb": 100, "enable_thinking": False},
        "plain": {"path": "p.gguf", "vram_mb": 100},
        "big": {"backend": "vllm_serve", "path": "org/big", "vram_mb": 100, "thinking": True},
    }
    settings = Settings(ServiceSettings(models_root=str(tmp_path)), parse_manifest(manifest, "m"))
    entries = {m.profile.model_id: m.entry for m in engine_models(settings)}
    assert LlamaServerOptions.from_manifest("qwen", entries["qwen"]).process.thinking is False
    assert LlamaServerOptions.from_manifest("plain", entries["plain"]).process.thinking is None
    assert VllmServeOptions.from_manifest("big", entries["big"]).process.thinking is True


@pytest.mark.parametrize(
    ("manifest", "request_kwargs", "upstream"),
    [
        (False, None, {"enable_thinking": False}),
        (True, None, {"enable_thinking": True}),
        (False, {"enable_thinking": True}, {"enable_thinking": True}),
        (True, {"reasoning_effort": "low"}, {"enable_thinking": True, "reasoning_effort": "low"}),
        (None, None, None),
    ],
)
async def test_the_manifests_thinking_is_the_default_a_requests_own_value_wins(
    tmp_path: Path, manifest: bool | None, request_kwargs: Any, upstream: Any
) -> None:
    entry: dict[str, Any] = {
        "path": "org/tiny-model",
        "vllm_serve": {
            "binary": str(FAKES / "vllm"),
            "env": {"FAKE_VLLM_LOAD_S": "0.05"},
            "start_timeout_s": 20,
            "stop_grace_s": 5,
        },
    }
    if manifest is not None:
        entry["thinking"] = manifest
    backend = VllmServeBackend(
        "tiny", VllmServeOptions.from_manifest("tiny", entry), log_dir=tmp_path
    )
    await backend.start()
    try:
        body = dict(ECHO)
        if request_kwargs is not None:
            body["chat_template_kwargs"] = request_kwargs
        answer = await backend.chat(body)
        assert json.loads(answer["choices"][0]["message"]["content"]) == upstream
    finally:
        await backend.stop()
