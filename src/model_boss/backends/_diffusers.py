"""The ``diffusers`` kind: a worker subprocess holding one diffusers pipeline.

Needs the ``diffusers`` extra (``pip install 'model-boss[diffusers]'``) in the interpreter
that runs the worker (``diffusers.python``, by default the coordinator's own).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import model_boss
from model_boss.backends._budget import LeaseBudget, format_fractions
from model_boss.backends._options import EntryReader
from model_boss.backends._process_backend import ProcessBackend, ProcessOptions
from model_boss.backends._protocol import Capability, FailureCallback

__all__ = ["DiffusersBackend", "DiffusersOptions"]

PIPELINE_TYPES = ("sd15", "sdxl", "sd35", "flux")
DTYPES = ("auto", "float16", "bfloat16", "float32")


@dataclass(frozen=True)
class DiffusersOptions:
    """A ``diffusers`` entry: ``path`` (a diffusers folder, or a single file with
    ``pipeline_type``), ``dtype`` at the top; ``device``, ``default_steps``, ``python`` and
    the process fields in its ``diffusers`` table."""

    model_path: Path
    pipeline_type: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    default_steps: int = 30
    process: ProcessOptions = field(default_factory=lambda: ProcessOptions(start_timeout_s=300.0))

    TABLE: ClassVar[str] = "diffusers"

    @classmethod
    def from_manifest(cls, model_id: str, entry: Mapping[str, Any]) -> DiffusersOptions:
        r = EntryReader(model_id, entry, cls.TABLE)
        model_path = r.path("path", top=True, required=True)
        assert model_path is not None
        options = cls(
            model_path=model_path,
            pipeline_type=r.choice("pipeline_type", PIPELINE_TYPES, top=True),
            dtype=r.choice("dtype", DTYPES, "auto", top=True) or "auto",
            device=r.choice("device", ("auto", "cuda", "cpu"), "auto") or "auto",
            default_steps=r.integer("default_steps", 30, minimum=1, maximum=1000) or 30,
            process=_process_options(r),
        )
        r.finish()
        return options

    def command(self, python: str, port: int) -> list[str]:
        argv = [python, "-m", "model_boss.backends._diffusers_worker"]
        argv += ["--model", str(self.model_path), "--port", str(port)]
        argv += ["--device", self.device, "--dtype", self.dtype]
        argv += ["--default-steps", str(self.default_steps)]
        if self.pipeline_type is not None:
            argv += ["--pipeline-type", self.pipeline_type]
        return argv


def _process_options(reader: EntryReader) -> ProcessOptions:
    python = reader.string("python")  # the worker's interpreter is this kind's "binary"
    options = ProcessOptions.read(reader, start_timeout_s=300.0)
    if options.binary is not None:
        raise reader.error("diffusers.binary", "use diffusers.python for the worker interpreter")
    return ProcessOptions(
        binary=python,
        library_path=options.library_path,
        env=options.env,
        extra_args=options.extra_args,
        start_timeout_s=options.start_timeout_s,
        stop_grace_s=options.stop_grace_s,
        request_timeout_s=options.request_timeout_s,
    )


class DiffusersBackend(ProcessBackend):
    """A diffusers worker process answering ``/v1/images/generations``."""

    kind: ClassVar[str] = "diffusers"
    api_key_env: ClassVar[str | None] = "MODEL_BOSS_WORKER_KEY"
    _capabilities = frozenset({Capability.IMAGES})

    def __init__(
        self,
        model_id: str,
        options: DiffusersOptions,
        *,
        gpus: Sequence[int] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        on_failure: FailureCallback | None = None,
        budget: LeaseBudget | None = None,
    ) -> None:
        super().__init__(
            model_id,
            options.process,
            gpus=gpus,
            log_dir=log_dir,
            on_failure=on_failure,
            budget=budget,
        )
        self.options = options

    def command(self, port: int) -> list[str]:
        argv = self.options.command(self.options.process.binary or sys.executable, port)
        if self.budget is not None and self.budget.on_gpu:
            # the worker caps torch's allocator on each device at the leased share
            fractions = self.budget.cuda_fractions(self._gpus)
            argv += ["--memory-fractions", format_fractions(fractions)]
        return argv

    def extra_env(self) -> dict[str, str]:
        # The worker must import this very model_boss, even from a source checkout.
        package_root = str(Path(model_boss.__file__).resolve().parent.parent)
        existing = self.options.process.env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        pythonpath = ":".join(filter(None, [package_root, existing]))
        return {"PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}
