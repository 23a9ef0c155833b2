"""llama_server: manifest mapping, and the real llama-server with the real SmolLM2 model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from model_boss.backends import (
    BackendCrashed,
    BackendNotRunning,
    BackendStartError,
    BackendStartTimeout,
    BackendState,
    LlamaServerBackend,
    LlamaServerOptions,
    UnsupportedOperation,
    models_dir,
)
from model_boss.errors import ConfigError
from tests.backends.conftest import (
    FAKES,
    environment_names,
    port_closed,
    process_gone,
    wait_gone,
)

CHAT = {"messages": [{"role": "user", "content": "Write a short poem about the sea."}]}


def test_every_manifest_field_maps_to_its_flag(tmp_path: Path) -> None:
    entry = {
        "path": "/models/m.gguf",
        "context_size": 4096,
        "chat_template": "chatml",
        "vram_mb": 4000,  # a top-level field of other layers: ignored here
        "llama_server": {
            "n_gpu_layers": -1,
            "parallel": 2,
            "threads": 4,
            "flash_attn": True,
            "cache_type_k": "q8_0",
            "cache_type_v": "q8_0",
            "mmproj_path": "/models/mmproj.gguf",
            "image_max_tokens": 512,
            "draft_model_path": "/models/draft.gguf",
            "spec_type": "draft-simple",
            "spec_draft_n_max": 5,
            "spec_draft_n_min": 1,
            "spec_draft_p_min": 0.1,
            "spec_draft_ngl": "all",
            "reasoning": "off",
            "pooling": "mean",
            "alias": "m",
            "extra_args": ["--ubatch-size", 256],
        },
    }
    options = LlamaServerOptions.from_manifest("m-id", entry)

    assert options.command("/bin/llama-server", 8123, "m-id") == [
        "/bin/llama-server",
        "--model", "/models/m.gguf",
        "--host", "127.0.0.1",
        "--port", "8123",
        "--alias", "m",
        "--metrics",
        "--no-webui",
        "--ctx-size", "4096",
        "--n-gpu-layers", "-1",
        "--parallel", "2",
        "--threads", "4",
        "--flash-attn", "on",
        "--cache-type-k", "q8_0",
        "--cache-type-v", "q8_0",
        "--mmproj", "/models/mmproj.gguf",
        "--image-max-tokens", "512",
        "--spec-draft-model", "/models/draft.gguf",
        "--spec-type", "draft-simple",
        "--spec-draft-n-max", "5",
        "--spec-draft-n-min", "1",
        "--spec-draft-p-min", "0.1",
        "--spec-draft-ngl", "all",
        "--reasoning", "off",
        "--pooling", "mean",
        "--chat-template", "chatml",
    ]  # fmt: skip
    assert options.process.extra_args == ("--ubatch-size", "256")


def test_a_slot_split_over_gpus_gets_an_even_tensor_split() -> None:
    # The ledger leases an even share per GPU; llama.cpp's default splits by free memory.
    options = LlamaServerOptions.from_manifest(
        "m", {"path": "/models/m.gguf", "llama_server": {"binary": "/opt/llama-server"}}
    )
    split = LlamaServerBackend("m", options, gpus=(0, 2, 3)).command(8080)
    assert split[-2:] == ["--tensor-split", "1,1,1"]
    assert "--tensor-split" not in LlamaServerBackend("m", options, gpus=(1,)).command(8080)
    assert "--tensor-split" not in LlamaServerBackend("m", options).command(8080)


def test_a_relative_path_resolves_in_the_model_cache() -> None:
    options = LlamaServerOptions.from_manifest("m", {"path": "sub/m.gguf"})
    assert options.model_path == models_dir() / "sub" / "m.gguf"
    assert options.command("llama-server", 1, "m")[:8] == [
        "llama-server", "--model", str(models_dir() / "sub" / "m.gguf"),
        "--host", "127.0.0.1", "--port", "1", "--alias",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({}, "model 'm': path: is required"),
        ({"path": 5}, "model 'm': path: expected a non-empty string, got 5"),
        ({"path": "m.gguf", "context_size": "big"}, "context_size: expected an integer"),
        ({"path": "m.gguf", "llama_server": []}, "llama_server must be a table"),
        (
            {"path": "m.gguf", "llama_server": {"parallel": 0}},
            "llama_server.parallel: must be >= 1",
        ),
        ({"path": "m.gguf", "llama_server": {"n_gpu_layers": "most"}}, "llama_server.n_gpu_layers"),
        ({"path": "m.gguf", "llama_server": {"flash_attn": "yes"}}, "llama_server.flash_attn"),
        ({"path": "m.gguf", "llama_server": {"cache_type_k": "q3"}}, "llama_server.cache_type_k"),
        (
            {"path": "m.gguf", "llama_server": {"spec_draft_p_min": 2}},
            "spec_draft_p_min: must be <= 1",
        ),
        ({"path": "m.gguf", "llama_server": {"n_ctx": 4096}}, "llama_server.n_ctx: unknown key"),
        ({"path": "m.gguf", "llama_server": {"extra_args": "--x"}}, "llama_server.extra_args"),
        (
            {"path": "m.gguf", "llama_server": {"start_timeout_s": 0}},
            "start_timeout_s: must be > 0",
        ),
        (
            {"path": "m.gguf", "llama_server": {"spec_draft_n_max": 2, "spec_draft_n_min": 3}},
            "spec_draft_n_min: must be <= spec_draft_n_max",
        ),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        LlamaServerOptions.from_manifest("m", entry)


async def test_a_missing_binary_fails_start_without_a_process(tmp_path: Path) -> None:
    entry = {"path": "m.gguf", "llama_server": {"binary": str(tmp_path / "no-llama-server")}}
    backend = LlamaServerBackend(
        "m", LlamaServerOptions.from_manifest("m", entry), log_dir=tmp_path
    )
    with pytest.raises(BackendStartError, match="cannot run"):
        await backend.start()
    assert backend.state is BackendState.FAILED
    with pytest.raises(BackendNotRunning, match="failed"):
        await backend.chat(CHAT)


async def test_a_start_up_that_never_becomes_ready_is_stopped_after_the_timeout(
    tmp_path: Path,
) -> None:
    entry = {
        "path": "m.gguf",
        "llama_server": {"binary": str(FAKES / "loading_forever_server"), "start_timeout_s": 1.5},
    }
    backend = LlamaServerBackend(
        "m", LlamaServerOptions.from_manifest("m", entry), log_dir=tmp_path
    )
    started = time.monotonic()
    with pytest.raises(BackendStartTimeout, match=r"not ready after 1\.5 s") as caught:
        await backend.start()

    assert 1.5 <= time.monotonic() - started < 10
    assert any("loading forever" in line for line in caught.value.log_tail)
    assert backend.pid is not None
    assert process_gone(backend.pid)
    assert backend.state is BackendState.FAILED
    assert backend.status()["failure"].startswith("llama_server[m] was not ready")


async def test_cancelling_start_stops_the_process(tmp_path: Path) -> None:
    entry = {"path": "m.gguf", "llama_server": {"binary": str(FAKES / "loading_forever_server")}}
    backend = LlamaServerBackend(
        "m", LlamaServerOptions.from_manifest("m", entry), log_dir=tmp_path
    )
    starting = asyncio.create_task(backend.start())
    deadline = time.monotonic() + 10
    while not backend.recent_log_lines():  # the fake has started and bound its port
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert backend.state is BackendState.STARTING
    pid = backend.pid
    assert pid is not None

    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting

    assert process_gone(pid)
    assert backend.status()["state"] == "stopped"


@pytest.mark.slow
async def test_a_bad_model_path_fails_fast_with_llama_servers_own_error(
    smollm_entry: dict[str, Any], tmp_path: Path
) -> None:
    entry = {**smollm_entry, "path": str(tmp_path / "missing.gguf")}
    backend = LlamaServerBackend(
        "m", LlamaServerOptions.from_manifest("m", entry), log_dir=tmp_path
    )
    started = time.monotonic()
    with pytest.raises(BackendStartError) as caught:
        await backend.start()

    assert time.monotonic() - started < 10
    assert not isinstance(caught.value, BackendStartTimeout)
    assert "exited during start-up (exit code 1)" in str(caught.value)
    assert "failed to open GGUF file" in str(caught.value)
    assert "missing.gguf" in str(caught.value)


@pytest.mark.slow
async def test_real_llama_server_chats_streams_and_stops(
    smollm_entry: dict[str, Any], tmp_path: Path
) -> None:
    backend = LlamaServerBackend(
        "smollm2", LlamaServerOptions.from_manifest("smollm2", smollm_entry), log_dir=tmp_path
    )
    await backend.start()
    try:
        assert backend.state is BackendState.READY
        assert backend.startup_s is not None
        print(f"\nllama-server start-up: {backend.startup_s:.2f} s")
        assert (await backend.health()).ok
        footprint = await backend.footprint()
        assert footprint.ram_mb > 20  # the process with its model mapped in
        assert footprint.vram_mb == {}

        answer = await backend.chat({**CHAT, "max_tokens": 24, "temperature": 0})
        assert answer["object"] == "chat.completion"
        assert answer["model"] == "smollm2"
        assert answer["choices"][0]["message"]["content"].strip()
        assert 0 < answer["usage"]["completion_tokens"] <= 24

        request_at = time.monotonic()
        arrivals: list[tuple[float, bytes]] = []
        poem = {"messages": [{"role": "user", "content": "Tell me about mountains."}]}
        async for event in backend.chat_stream({**poem, "max_tokens": 64, "ignore_eos": True}):
            arrivals.append((time.monotonic() - request_at, event))
        content = [
            (at, json.loads(event[6:])) for at, event in arrivals if event.startswith(b"data: {")
        ]
        token_times = [
            at for at, c in content if c["choices"] and c["choices"][0]["delta"].get("content")
        ]
        timings = next(c["timings"] for _, c in reversed(content) if "timings" in c)
        generation_s = timings["predicted_ms"] / 1000
        spread_s = token_times[-1] - token_times[0]
        print(
            f"first token {token_times[0] * 1000:.0f} ms after the request "
            f"(prompt {timings['prompt_n']} tokens in {timings['prompt_ms']:.0f} ms), "
            f"{timings['predicted_per_second']:.1f} tokens/s generated, "
            f"{len(token_times) / spread_s:.1f} tokens/s seen by the client"
        )
        assert arrivals[-1][1] == b"data: [DONE]\n\n"
        assert all(event.endswith(b"\n\n") for _, event in arrivals)
        assert len(token_times) >= 60
        # Chunk by chunk as generated: the client sees the tokens spread over (nearly) the
        # whole generation time the server reports; a buffered stream arrives all at once.
        assert spread_s > 0.6 * generation_s
        assert token_times == sorted(token_times)

        completion = await backend.completions({"prompt": "1, 2, 3,", "max_tokens": 8})
        assert completion["choices"][0]["text"]
        with pytest.raises(UnsupportedOperation):
            await backend.embeddings({"input": "x"})
        with pytest.raises(UnsupportedOperation):
            await backend.images({"prompt": "x"})
        status = backend.status()
        assert status["state"] == "ready"
        assert status["pid"] == backend.pid
    finally:
        pid, port = backend.pid, backend.port
        await backend.stop()
    assert backend.status()["state"] == "stopped"
    assert pid is not None
    assert port is not None
    assert process_gone(pid)
    assert await port_closed(port)
    assert "srv" in (tmp_path / "smollm2.llama_server.log").read_text()


async def test_llama_server_gets_its_own_key_out_of_sight_and_no_cors_or_secrets(
    smollm_entry: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (
        ("MODEL_BOSS_API_KEYS", "user-secret"),
        ("MODEL_BOSS_ADMIN_KEYS", "admin-secret"),
        ("OPENAI_API_KEY", "sk-remote"),
        ("ANTHROPIC_API_KEY", "sk-ant"),
    ):
        monkeypatch.setenv(name, value)
    backend = LlamaServerBackend(
        "smollm2", LlamaServerOptions.from_manifest("smollm2", smollm_entry), log_dir=tmp_path
    )
    await backend.start()
    try:
        key, pid = backend.api_key, backend.pid
        assert key
        assert pid
        ps = await asyncio.create_subprocess_exec(
            "ps", "-ww", "-o", "args=", "-p", str(pid), stdout=asyncio.subprocess.PIPE
        )
        args = (await ps.communicate())[0].decode()
        assert "llama-server" in args
        assert key not in args
        names = environment_names(pid)
        assert not names & {"MODEL_BOSS_API_KEYS", "MODEL_BOSS_ADMIN_KEYS", "OPENAI_API_KEY"}
        assert "ANTHROPIC_API_KEY" not in names

        base = f"http://127.0.0.1:{backend.port}"
        page = {"Origin": "http://evil.example"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/v1/chat/completions", json=CHAT, headers=page) as r:
                assert r.status == 401
            for path in ("/v1/models", "/slots", "/props", "/metrics"):
                async with http.get(base + path, headers=page) as r:
                    assert r.status == 401, path
            preflight = {**page, "Access-Control-Request-Method": "POST"}
            async with http.options(f"{base}/v1/chat/completions", headers=preflight) as r:
                assert r.headers.get("Access-Control-Allow-Origin") != page["Origin"]
        answer = await backend.chat({**CHAT, "max_tokens": 4})  # the coordinator's client
        assert answer["choices"]
    finally:
        await backend.stop()


@pytest.mark.slow
async def test_closing_a_stream_early_stops_generation_upstream(
    smollm_entry: dict[str, Any], tmp_path: Path
) -> None:
    backend = LlamaServerBackend(
        "smollm2", LlamaServerOptions.from_manifest("smollm2", smollm_entry), log_dir=tmp_path
    )
    await backend.start()
    try:
        stream = backend.chat_stream({**CHAT, "max_tokens": 1500, "ignore_eos": True})
        received = [await anext(stream) for _ in range(3)]
        assert all(event.startswith(b"data: ") for event in received)
        assert await _slot_busy(backend)
        await stream.aclose()  # type: ignore[attr-defined]

        deadline = time.monotonic() + 3
        while await _slot_busy(backend):
            assert time.monotonic() < deadline, "llama-server kept generating"
            await asyncio.sleep(0.05)
        answer = await backend.chat({**CHAT, "max_tokens": 4})  # the server is free again
        assert answer["choices"]
    finally:
        await backend.stop()


async def _slot_busy(backend: LlamaServerBackend) -> bool:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{backend.port}/slots",
            headers={"Authorization": f"Bearer {backend.api_key}"},
        ) as response,
    ):
        slots = await response.json()
    return any(slot["is_processing"] for slot in slots)


@pytest.mark.slow
async def test_kill_9_of_llama_server_is_reported_within_1_s_with_its_log(
    smollm_entry: dict[str, Any], tmp_path: Path
) -> None:
    reported = asyncio.Event()
    failures: list[BackendCrashed] = []

    def on_failure(error: BackendCrashed) -> None:
        failures.append(error)
        reported.set()

    backend = LlamaServerBackend(
        "smollm2",
        LlamaServerOptions.from_manifest("smollm2", smollm_entry),
        log_dir=tmp_path,
        on_failure=on_failure,
    )
    await backend.start()
    try:
        assert backend.pid is not None
        killed_at = time.monotonic()
        os.kill(backend.pid, signal.SIGKILL)
        await asyncio.wait_for(reported.wait(), timeout=1.0)

        assert time.monotonic() - killed_at < 1.0
        assert backend.state is BackendState.FAILED
        error = failures[0]
        assert "killed by SIGKILL" in str(error)
        logged = (tmp_path / "smollm2.llama_server.log").read_text().strip().splitlines()
        assert error.log_tail
        assert list(error.log_tail) == logged[-len(error.log_tail) :]
        assert any("listening on http://127.0.0.1" in line for line in error.log_tail)
        with pytest.raises(BackendNotRunning, match="killed by SIGKILL"):
            await backend.chat(CHAT)
        assert not (await backend.health()).ok
    finally:
        await backend.stop()
    assert len(failures) == 1


COORDINATOR = """
import asyncio, json, sys
from model_boss.backends import create_backend

async def main():
    backend = create_backend("llama_server", "smollm2", json.loads(sys.argv[1]),
                             log_dir=sys.argv[2])
    await backend.start()
    print(backend.pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.slow
async def test_llama_server_dies_within_2_s_when_its_coordinator_is_sigkilled(
    smollm_entry: dict[str, Any], tmp_path: Path
) -> None:
    coordinator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        COORDINATOR,
        json.dumps(smollm_entry),
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert coordinator.stdout is not None
        llama_pid = int(await asyncio.wait_for(coordinator.stdout.readline(), 60))
        assert not process_gone(llama_pid)

        coordinator.send_signal(signal.SIGKILL)

        assert await wait_gone(llama_pid, timeout_s=2) < 2
    finally:
        if coordinator.returncode is None:
            coordinator.kill()
        await coordinator.wait()


@pytest.mark.slow
async def test_embeddings_from_a_llama_server_started_for_embeddings(
    smollm_entry: dict[str, Any], tmp_path: Path
) -> None:
    table = {**smollm_entry["llama_server"], "embeddings": True, "pooling": "mean"}
    entry = {**smollm_entry, "llama_server": table}
    backend = LlamaServerBackend(
        "smollm2-embed", LlamaServerOptions.from_manifest("smollm2-embed", entry), log_dir=tmp_path
    )
    await backend.start()
    try:
        result = await backend.embeddings({"input": ["the sea", "the mountains"]})
        vectors = [item["embedding"] for item in result["data"]]
        assert len(vectors) == 2
        assert len(vectors[0]) == len(vectors[1]) == 576  # SmolLM2-135M's hidden size
        assert vectors[0] != vectors[1]
        with pytest.raises(UnsupportedOperation):
            await backend.chat(CHAT)
    finally:
        await backend.stop()


@pytest.mark.slow
async def test_requests_after_llama_servers_keep_alive_timeout_still_work(
    smollm_entry: dict[str, Any], tmp_path: Path
) -> None:
    """llama-server closes keep-alive connections idle for 5 s; a pooled one must not be reused."""
    backend = LlamaServerBackend(
        "smollm2", LlamaServerOptions.from_manifest("smollm2", smollm_entry), log_dir=tmp_path
    )
    await backend.start()
    try:
        await backend.completions({"prompt": "a", "max_tokens": 1})
        await asyncio.sleep(5.5)  # the idle time under test, not synchronisation
        answer = await backend.completions({"prompt": "a", "max_tokens": 1})
        assert answer["choices"]
    finally:
        await backend.stop()
