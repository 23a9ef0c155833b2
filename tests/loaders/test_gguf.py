"""The gguf loader with the real llama-server and SmolLM2, under a real SQLite RAM lease."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import psutil
import pytest

from model_boss import GPUBoss, RAMBoss
from model_boss.loaders import GGUFModel, ManagedModelLoader, ModelLoadFailed
from tests.backends.conftest import port_closed, wait_gone
from tests.loaders.conftest import used_mb

pytestmark = pytest.mark.slow


def server_options(binary: Path) -> dict[str, object]:
    return {"binary": str(binary), "threads": 2, "parallel": 1, "start_timeout_s": 60}


async def test_a_gguf_model_runs_in_its_own_llama_server_under_a_ram_lease(
    cpu_boss: GPUBoss, ram_boss: RAMBoss, demo_model: Path, llama_server_binary: Path
) -> None:
    async with ManagedModelLoader(cpu_boss, ram_boss=ram_boss) as kit:
        model = await kit.load(
            "smollm2",
            demo_model,
            context_size=1024,
            llama_server=server_options(llama_server_binary),
        )
        assert model.kind == "gguf"
        assert model.device == "cpu"
        # estimated from the GGUF metadata: ~98 MB of weights, a 1024-token KV cache, overhead
        assert 150 < model.mb < 2000
        (pool,) = (await ram_boss.status()).pools
        assert [(lease.model_id, lease.mb) for lease in pool.leases] == [("smollm2", model.mb)]
        gguf = model.model
        assert isinstance(gguf, GGUFModel)
        status = gguf.backend.status()
        pid, port = status["pid"], status["port"]
        assert status["gpus"] == []  # CUDA_VISIBLE_DEVICES="": the CPU only, as leased
        assert pid is not None
        assert psutil.pid_exists(pid)

        text = await model.chat(
            [{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0
        )
        assert text.strip()
        async with model.use() as llm:
            pieces = [
                p
                async for p in llm.stream_chat(
                    [{"role": "user", "content": "Count to three."}], max_tokens=8, temperature=0
                )
            ]
        assert len(pieces) >= 2
        assert "".join(pieces).strip()
        completion = await model.complete("The capital of France is", max_tokens=4)
        assert isinstance(completion, str)
        assert gguf.base_url == f"http://127.0.0.1:{port}/v1"
        assert gguf.api_key
        async with httpx.AsyncClient() as http:  # its own llama-server wants its key
            assert (await http.get(f"{gguf.base_url}/models")).status_code == 401
            bearer = {"Authorization": f"Bearer {gguf.api_key}"}
            assert (await http.get(f"{gguf.base_url}/models", headers=bearer)).status_code == 200

        await model.unload()
        await wait_gone(pid, 10.0)
        assert await port_closed(int(port))
        assert (await used_mb(ram_boss))["t:ram"] == 0


async def test_a_gguf_model_in_embeddings_mode_embeds(
    cpu_boss: GPUBoss, ram_boss: RAMBoss, demo_model: Path, llama_server_binary: Path
) -> None:
    async with ManagedModelLoader(cpu_boss, ram_boss=ram_boss) as kit:
        model = await kit.load(
            "smollm2-embed",
            demo_model,
            context_size=512,
            llama_server={
                **server_options(llama_server_binary),
                "embeddings": True,
                "pooling": "mean",  # SmolLM2 is a causal model: no pooling of its own
            },
        )
        a, b = await model.embed(["a cat sat on the mat", "GPU memory leases"])
        assert len(a) == len(b) > 100
        assert a != b


async def test_a_bad_gguf_file_fails_with_llama_servers_own_words_and_frees_the_lease(
    cpu_boss: GPUBoss, ram_boss: RAMBoss, tmp_path: Path, llama_server_binary: Path
) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF but not really")
    async with ManagedModelLoader(cpu_boss, ram_boss=ram_boss) as kit:
        with pytest.raises(ModelLoadFailed, match="gguf"):
            await asyncio.wait_for(
                kit.load(
                    "broken",
                    bad,
                    vram_mb=100,
                    llama_server=server_options(llama_server_binary),
                ),
                60,
            )
    assert (await used_mb(ram_boss))["t:ram"] == 0
