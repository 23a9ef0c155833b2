"""Diffusers pipelines loaded into your process (``DiffusionPipeline.from_pretrained``).

A local pipeline directory, or a single checkpoint file with ``pipeline_type`` (``sd15``,
``sdxl``, ``sd35``, ``flux``). ``dtype``: ``auto`` (default), ``float16``, ``bfloat16`` or
``float32`` (half precision falls back to float32 on the CPU). Nothing is downloaded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_boss.loaders._base import Target, estimate_from_files
from model_boss.loaders._torch import free_torch_memory, load_capped, release_cuda_cap

__all__ = ["DiffusersLoader"]


class DiffusersLoader:
    kind = "diffusers"

    def estimate_mb(self, path: Path | None, options: Mapping[str, Any]) -> int | None:
        return estimate_from_files(path)

    async def load(
        self, model_id: str, path: Path | None, target: Target, options: Mapping[str, Any]
    ) -> Any:
        from model_boss.backends._diffusers_worker import load_pipeline

        if path is None:
            raise ValueError("the diffusers loader needs a pipeline directory or file")
        dtype = str(options.get("dtype") or "auto")
        pipeline_type = options.get("pipeline_type")
        kind = None if pipeline_type is None else str(pipeline_type)
        return await load_capped(target, lambda: load_pipeline(path, kind, target.device, dtype))

    async def unload(self, model: Any) -> None:
        release_cuda_cap(model)
        del model
        await asyncio.to_thread(free_torch_memory)
