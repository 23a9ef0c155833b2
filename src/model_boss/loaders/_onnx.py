"""ONNX models in an ONNX Runtime session: CUDA on the leased GPU, else the CPU.

The loaded object is the ``onnxruntime.InferenceSession``. On a GPU lease the session uses
``CUDAExecutionProvider`` with that GPU's ``device_id`` and fails clearly when this
onnxruntime has no CUDA support. Needs the ``onnx`` extra (``onnxruntime``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_boss.loaders._base import Target, estimate_from_files

__all__ = ["ONNXLoader"]


class ONNXLoader:
    kind = "onnx"

    def estimate_mb(self, path: Path | None, options: Mapping[str, Any]) -> int | None:
        return estimate_from_files(path)

    async def load(
        self, model_id: str, path: Path | None, target: Target, options: Mapping[str, Any]
    ) -> Any:
        import onnxruntime

        if path is None:
            raise ValueError("the onnx loader needs a .onnx file")
        available = set(onnxruntime.get_available_providers())
        providers: list[Any] = []
        if target.gpu_index is not None:
            if "CUDAExecutionProvider" not in available:
                raise RuntimeError(
                    "this onnxruntime has no CUDAExecutionProvider; install onnxruntime-gpu, "
                    "or load with device='cpu'"
                )
            # ONNX Runtime counts devices as CUDA does: the torch-style index is the one.
            index = int(target.device.split(":", 1)[1])
            providers.append(("CUDAExecutionProvider", {"device_id": index}))
        providers.append("CPUExecutionProvider")
        session_options = onnxruntime.SessionOptions()
        threads = options.get("threads")
        if threads is not None:
            session_options.intra_op_num_threads = int(threads)
        return await asyncio.to_thread(
            onnxruntime.InferenceSession, str(path), session_options, providers
        )

    async def unload(self, model: Any) -> None:
        del model
