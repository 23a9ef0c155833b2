"""Each framework loader with a real (tiny, locally made) model, under a real RAM lease.

Nothing is downloaded: the diffusers pipeline (tests/conftest.py), the Transformers model
and tokenizer, and the ONNX graph are built with random weights and saved to a temporary
directory.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from model_boss import GPUBoss, RAMBoss
from model_boss.loaders import (
    DiffusersLoader,
    HFModel,
    HFModelLoader,
    ManagedModelLoader,
    ModelLoadFailed,
    ONNXLoader,
    Target,
    kind_from_path,
)
from tests.loaders.conftest import used_mb


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with random weights and a word-level tokenizer made from scratch."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "hello", "world", "model", "boss", "gpu", "lease", "."]
    vocab = {w: i for i, w in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(words),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
    )
    path = tmp_path_factory.mktemp("llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """y = x @ W + b with fixed weights."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32), "W")
    b = numpy_helper.from_array(np.array([10.0, 20.0], dtype=np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["y"]),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("onnx") / "affine.onnx"
    onnx.save(model, str(path))
    return path


def test_the_loader_is_told_from_the_path(
    tiny_pipeline: Path, tiny_llama: Path, tiny_onnx: Path
) -> None:
    assert kind_from_path(tiny_pipeline) == "diffusers"
    assert kind_from_path(tiny_llama) == "hf"
    assert kind_from_path(tiny_onnx) == "onnx"
    assert kind_from_path(Path("x/model.Q4_K_M.gguf")) == "gguf"


async def test_a_diffusers_pipeline_loads_under_a_lease_and_makes_images(
    cpu_boss: GPUBoss, ram_boss: RAMBoss, tiny_pipeline: Path
) -> None:
    async with ManagedModelLoader(cpu_boss, ram_boss=ram_boss) as kit:
        model = await kit.load("ddpm", tiny_pipeline)  # size estimated from the files
        assert model.kind == "diffusers"
        assert 0 < model.mb == (await used_mb(ram_boss))["t:ram"]
        async with model.use() as pipe:
            out = await asyncio.to_thread(
                pipe, batch_size=1, num_inference_steps=2, output_type="np"
            )
        assert out.images.shape == (1, 32, 32, 3)
    assert (await used_mb(ram_boss))["t:ram"] == 0


async def test_a_transformers_model_generates_and_embeds(
    cpu_boss: GPUBoss, ram_boss: RAMBoss, tiny_llama: Path
) -> None:
    async with ManagedModelLoader(cpu_boss, ram_boss=ram_boss) as kit:
        model = await kit.load("llama", tiny_llama, dtype="float32")
        assert isinstance(model.model, HFModel)
        assert model.model.task == "causal-lm"
        text = await model.generate("hello world", max_new_tokens=4, do_sample=False)
        assert isinstance(text, str)
        assert len(text.split()) == 4  # word-level vocabulary: one word per token
        assert set(text.split()) <= {"hello", "world", "model", "boss", "gpu", "lease", "."}
        embedder = await kit.load("llama-embed", tiny_llama, task="embedding")
        vectors = await embedder.embed(["hello world", "gpu lease ."])
        assert [len(v) for v in vectors] == [32, 32]
        assert vectors[0] != vectors[1]
        with pytest.raises(TypeError, match="embed"):
            await embedder.generate("hello")


async def test_an_onnx_model_runs_in_a_session_under_a_lease(
    cpu_boss: GPUBoss, ram_boss: RAMBoss, tiny_onnx: Path
) -> None:
    import numpy as np

    async with ManagedModelLoader(cpu_boss, ram_boss=ram_boss) as kit:
        model = await kit.load("affine", tiny_onnx, threads=1)
        async with model.use() as session:
            (y,) = await asyncio.to_thread(
                session.run, None, {"x": np.array([[1.0, 1.0]], dtype=np.float32)}
            )
        assert y.tolist() == [[14.0, 26.0]]
        assert (await used_mb(ram_boss))["t:ram"] == model.mb > 0


async def test_onnx_on_a_gpu_lease_without_cuda_support_fails_clearly(tiny_onnx: Path) -> None:
    with pytest.raises(RuntimeError, match="no CUDAExecutionProvider"):
        await ONNXLoader().load("affine", tiny_onnx, Target("cuda:0", 0, 100), {})


async def test_a_broken_model_directory_fails_to_load_and_frees_the_lease(
    cpu_boss: GPUBoss, ram_boss: RAMBoss, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    async with ManagedModelLoader(cpu_boss, ram_boss=ram_boss) as kit:
        with pytest.raises(ModelLoadFailed, match="hf"):
            await kit.load("broken", broken, vram_mb=100)
        with pytest.raises(ModelLoadFailed, match="diffusers"):
            await kit.load("nodiff", broken, loader=DiffusersLoader(), vram_mb=100)
    assert (await used_mb(ram_boss))["t:ram"] == 0


def test_hf_loader_rejects_an_unknown_task() -> None:
    with pytest.raises(ValueError, match="task must be"):
        HFModelLoader(task="translation")
