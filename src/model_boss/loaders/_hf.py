"""Hugging Face Transformers models loaded into your process, from a local directory.

The model class follows the directory's ``config.json``: ``*ForCausalLM`` loads with
``AutoModelForCausalLM``, encoder-decoder models with ``AutoModelForSeq2SeqLM``, anything
else with ``AutoModel`` (for embeddings); ``task=`` (``causal-lm``, ``seq2seq-lm``,
``embedding``) overrides it. ``dtype`` as for diffusers. Nothing is downloaded
(``local_files_only``). Needs the ``hf`` extra (``transformers``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_boss.loaders._base import Target, estimate_from_files
from model_boss.loaders._torch import free_torch_memory, load_capped, release_cuda_cap, torch_dtype

__all__ = ["TASKS", "HFModel", "HFModelLoader"]

TASKS = ("auto", "causal-lm", "seq2seq-lm", "embedding")


@dataclass(slots=True)
class HFModel:
    """A loaded Transformers model and its tokenizer. The async methods run the model in a
    worker thread, so the event loop (and the lease heartbeat) keeps running."""

    model: Any
    tokenizer: Any
    device: str
    task: str

    async def generate(
        self, prompt: str | Sequence[Mapping[str, Any]], *, max_new_tokens: int = 64, **kw: Any
    ) -> str:
        """The text generated after ``prompt`` (a string, or chat messages when the
        tokenizer has a chat template)."""
        if self.task == "embedding":
            raise TypeError("this model was loaded for embeddings; use embed()")
        return await asyncio.to_thread(self._generate, prompt, max_new_tokens, kw)

    def _generate(
        self, prompt: str | Sequence[Mapping[str, Any]], max_new_tokens: int, kw: dict[str, Any]
    ) -> str:
        import torch

        if isinstance(prompt, str):
            text = prompt
        else:
            text = self.tokenizer.apply_chat_template(
                list(prompt), tokenize=False, add_generation_prompt=True
            )
        inputs = self.tokenizer(text, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, **kw)
        start = 0 if self.task == "seq2seq-lm" else inputs["input_ids"].shape[1]
        return str(self.tokenizer.decode(out[0][start:], skip_special_tokens=True))

    async def embed(self, texts: str | Sequence[str]) -> list[list[float]]:
        """One mean-pooled vector (of the last hidden states) per text."""
        batch = [texts] if isinstance(texts, str) else list(texts)
        return await asyncio.to_thread(self._embed, batch)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        import torch

        inputs = self.tokenizer(texts, return_tensors="pt", padding=True).to(self.device)
        with torch.inference_mode():
            out = self.model(**inputs, output_hidden_states=True)
        hidden = out.hidden_states[-1] if getattr(out, "hidden_states", None) else out[0]
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return [[float(x) for x in row] for row in pooled.float().cpu().tolist()]


class HFModelLoader:
    kind = "hf"

    def __init__(self, task: str = "auto") -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        self.task = task

    def estimate_mb(self, path: Path | None, options: Mapping[str, Any]) -> int | None:
        return estimate_from_files(path)

    async def load(
        self, model_id: str, path: Path | None, target: Target, options: Mapping[str, Any]
    ) -> HFModel:
        if path is None:
            raise ValueError("the hf loader needs a local model directory")
        task = str(options.get("task") or self.task)
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        dtype = options.get("dtype")
        return await load_capped(target, lambda: _load(path, task, target.device, dtype))

    async def unload(self, model: Any) -> None:
        release_cuda_cap(model)
        del model
        await asyncio.to_thread(free_torch_memory)


def _task_of(path: Path) -> str:
    config = json.loads((path / "config.json").read_text())
    names = [str(a) for a in config.get("architectures") or []]
    if any(n.endswith("ForCausalLM") for n in names):
        return "causal-lm"
    if config.get("is_encoder_decoder") or any("ConditionalGeneration" in n for n in names):
        return "seq2seq-lm"
    return "embedding"


def _load(path: Path, task: str, device: str, dtype: object) -> HFModel:
    import transformers

    if not path.is_dir():
        raise ValueError(f"the hf loader needs a local model directory, got {path}")
    if task == "auto":
        task = _task_of(path)
    cls = {
        "causal-lm": transformers.AutoModelForCausalLM,
        "seq2seq-lm": transformers.AutoModelForSeq2SeqLM,
        "embedding": transformers.AutoModel,
    }[task]
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model = cls.from_pretrained(path, dtype=torch_dtype(dtype, device), local_files_only=True)
    model.to(device).eval()
    return HFModel(model, tokenizer, device, task)
