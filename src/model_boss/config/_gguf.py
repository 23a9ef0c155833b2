"""A lean GGUF metadata reader: the scalar keys and the tensors' sizes, nothing else.

``gguf.GGUFReader`` builds a numpy view for every field, the tokenizer's 50,000-string
vocabulary included: 1.5 s for a 100 MB model on a slow core, paid at every coordinator
start. This walks the header with ``struct`` and skips arrays by their lengths (~20 ms).
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

__all__ = ["GgufHeader", "read_gguf_header"]

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
#: Arrays of numbers longer than this are skipped (per-layer counts are kept).
_KEEP_ARRAY = 4096


class GgufHeader:
    """Scalar (and short numeric array) metadata, and each tensor's name and bytes."""

    def __init__(
        self,
        fields: dict[str, object],
        tensors: list[tuple[str, int]],
        array_lengths: dict[str, int] | None = None,
    ) -> None:
        self.fields = fields
        self.tensors = tensors
        #: The length of every array field, the skipped ones too (e.g. the vocabulary).
        self.array_lengths = array_lengths or {}


class _Reader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.last_array_length = 0

    def unpack(self, fmt: str) -> object:
        size = struct.calcsize(fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise ValueError("truncated GGUF file")
        return struct.unpack(fmt, data)[0]

    def u32(self) -> int:
        value = self.unpack("<I")
        assert isinstance(value, int)
        return value

    def u64(self) -> int:
        value = self.unpack("<Q")
        assert isinstance(value, int)
        return value

    def string(self) -> str:
        n = self.u64()
        data = self.f.read(n)
        if len(data) != n:
            raise ValueError("truncated GGUF string")
        return data.decode("utf-8", errors="replace")

    def value(self, kind: int) -> object:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.u32(), self.u64()
            self.last_array_length = count
            if item in _SCALARS and count <= _KEEP_ARRAY:
                return [self.unpack(_SCALARS[item]) for _ in range(count)]
            if item in _SCALARS:
                self.f.seek(struct.calcsize(_SCALARS[item]) * count, 1)
            elif item == _STRING:
                for _ in range(count):
                    self.f.seek(self.u64(), 1)
            else:
                for _ in range(count):
                    self.value(item)
            return None
        raise ValueError(f"unknown GGUF value type {kind}")


def read_gguf_header(path: str | Path) -> GgufHeader:
    """Raises OSError or ValueError for a file that is not a readable GGUF file."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb") as f:
        r = _Reader(f)
        if f.read(4) != b"GGUF":
            raise ValueError("not a GGUF file (bad magic)")
        version = r.u32()
        if version < 2:
            raise ValueError(f"GGUF version {version} is not supported")
        n_tensors, n_fields = r.u64(), r.u64()
        fields: dict[str, object] = {}
        lengths: dict[str, int] = {}
        for _ in range(n_fields):
            key = r.string()
            kind = r.u32()
            value = r.value(kind)
            if kind == _ARRAY:
                lengths[key] = r.last_array_length
            if value is not None:
                fields[key] = value
        tensors: list[tuple[str, int]] = []
        for _ in range(n_tensors):
            name = r.string()
            dims = [r.u64() for _ in range(r.u32())]
            kind = r.u32()
            r.u64()  # offset
            elements = 1
            for d in dims:
                elements *= d
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
            tensors.append((name, elements // block * size))
    return GgufHeader(fields, tensors, lengths)
