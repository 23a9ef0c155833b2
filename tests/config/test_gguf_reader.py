"""The lean GGUF reader agrees with the gguf package's reader."""

from __future__ import annotations

from gguf import GGUFReader

from model_boss.config._gguf import read_gguf_header
from tests.config.conftest import WriteGguf


def test_the_lean_reader_reads_what_the_gguf_package_reads(write_gguf: WriteGguf) -> None:
    path = write_gguf(layers=4, heads=8, kv_heads=2, embed=512, weight_mb=2)
    ours = read_gguf_header(path)
    theirs = GGUFReader(str(path))
    assert [(t.name, int(t.n_bytes)) for t in theirs.tensors] == ours.tensors
    for key, field in theirs.fields.items():
        if key.startswith("GGUF.") or key not in ours.fields:
            continue
        assert ours.fields[key] == field.contents(), key
    assert ours.fields["general.architecture"] == "llama"
