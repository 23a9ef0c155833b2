"""diffusers: the worker subprocess with a tiny locally built pipeline (random weights)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from model_boss.backends import (
    BackendStartError,
    BackendState,
    DiffusersBackend,
    DiffusersOptions,
    UnsupportedOperation,
    UpstreamError,
)
from model_boss.errors import ConfigError
from tests.backends.conftest import process_gone


def test_worker_command_line() -> None:
    entry: dict[str, Any] = {"path": "/m/sdxl.safetensors", "pipeline_type": "sdxl"}
    entry["dtype"] = "float16"
    entry["diffusers"] = {"device": "cuda", "default_steps": 20, "python": "/opt/py/bin/python"}
    options = DiffusersOptions.from_manifest("sdxl", entry)
    assert options.command("/opt/py/bin/python", 7000) == [
        "/opt/py/bin/python", "-m", "model_boss.backends._diffusers_worker",
        "--model", "/m/sdxl.safetensors", "--port", "7000",
        "--device", "cuda", "--dtype", "float16", "--default-steps", "20",
        "--pipeline-type", "sdxl",
    ]  # fmt: skip
    assert options.process.binary == "/opt/py/bin/python"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"path": "m", "pipeline_type": "sd9"}, "pipeline_type: expected one of"),
        ({"path": "m", "dtype": "int4"}, "dtype: expected one of"),
        ({"path": "m", "diffusers": {"device": "tpu"}}, "diffusers.device: expected one of"),
        ({"path": "m", "diffusers": {"binary": "x"}}, "diffusers.binary: use diffusers.python"),
    ],
)
def test_bad_diffusers_values_are_config_errors(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DiffusersOptions.from_manifest("m", entry)


@pytest.mark.slow
async def test_the_worker_answers_with_a_png_of_the_requested_size(
    tiny_pipeline: Path, tmp_path: Path
) -> None:
    entry = {"path": str(tiny_pipeline), "diffusers": {"device": "cpu", "default_steps": 2}}
    backend = DiffusersBackend(
        "tiny", DiffusersOptions.from_manifest("tiny", entry), log_dir=tmp_path
    )
    await backend.start()
    try:
        assert backend.state is BackendState.READY
        result = await backend.images({"prompt": "a cat", "size": "48x32", "n": 2, "seed": 7})
        assert len(result["data"]) == 2
        for item in result["data"]:
            png = base64.b64decode(item["b64_json"])
            assert png.startswith(b"\x89PNG\r\n\x1a\n")
            image = Image.open(io.BytesIO(png))
            assert image.format == "PNG"
            assert image.size == (48, 32)
        one = {"prompt": "a cat", "size": "48x32", "seed": 7}
        first, again = await backend.images(one), await backend.images(one)
        assert first == {**again, "created": first["created"]}  # same seed, same picture

        square = await backend.images({"width": 64, "height": 64, "num_inference_steps": 1})
        image = Image.open(io.BytesIO(base64.b64decode(square["data"][0]["b64_json"])))
        assert image.size == (64, 64)

        with pytest.raises(UpstreamError) as caught:
            await backend.images({"size": "33x33"})
        assert caught.value.status == 400
        assert "multiples of 2" in caught.value.body
        with pytest.raises(UnsupportedOperation):
            await backend.chat({"messages": []})
        assert (await backend.footprint()).ram_mb > 50  # torch and the pipeline
    finally:
        pid = backend.pid
        await backend.stop()
    assert pid is not None
    assert process_gone(pid)


@pytest.mark.slow
async def test_a_bad_pipeline_path_fails_start_with_the_workers_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-pipeline"
    missing.mkdir()
    entry = {"path": str(missing), "diffusers": {"device": "cpu"}}
    backend = DiffusersBackend(
        "bad", DiffusersOptions.from_manifest("bad", entry), log_dir=tmp_path
    )
    with pytest.raises(BackendStartError, match="exited during start-up") as caught:
        await backend.start()
    assert "Traceback (most recent call last)" in str(caught.value)
    assert "model_index.json" in str(caught.value)
