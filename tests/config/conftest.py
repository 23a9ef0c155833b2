from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

WriteGguf = Callable[..., Path]


@pytest.fixture
def write_gguf(tmp_path: Path) -> WriteGguf:
    """Writes a small GGUF file with llama metadata, one tensor of ``weight_mb`` MB outside
    the layers, and ``layer_mb`` MB in each of the ``layers`` blocks (``blk.N.weight``)."""

    def write(
        name: str = "tiny.gguf",
        *,
        layers: int = 4,
        heads: int = 8,
        kv_heads: int = 2,
        embed: int = 512,
        context: int = 2048,
        weight_mb: int = 2,
        layer_mb: int = 0,
    ) -> Path:
        path = tmp_path / name
        w = GGUFWriter(str(path), "llama")
        w.add_block_count(layers)
        w.add_head_count(heads)
        w.add_head_count_kv(kv_heads)
        w.add_embedding_length(embed)
        w.add_context_length(context)
        w.add_tensor("weights", np.zeros(weight_mb * 1024 * 1024 // 4, dtype=np.float32))
        for i in range(layers if layer_mb else 0):
            w.add_tensor(f"blk.{i}.weight", np.zeros(layer_mb * 1024 * 1024 // 4, np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path

    return write
