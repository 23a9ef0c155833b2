"""The ``llama_server`` kind: a managed llama.cpp ``llama-server`` process.

Ready when ``GET /health`` answers 200 (it answers 503 while the model loads). Requests
pass through to its OpenAI endpoints. What it may allocate comes from its slot's lease
(:func:`launch_settings`; see DESIGN.md, "How the lease binds each engine").
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from model_boss.backends._budget import LeaseBudget
from model_boss.backends._errors import BackendStartError
from model_boss.backends._llama_binary import LlamaBinary, probe_llama_server
from model_boss.backends._options import EntryReader
from model_boss.backends._paths import LLAMA_SERVER_ENV, find_llama_server
from model_boss.backends._process_backend import ProcessBackend, ProcessOptions
from model_boss.backends._protocol import Capability, FailureCallback
from model_boss.backends._supervisor import ProcessSpec
from model_boss.config import OVERHEAD_MB, GgufInfo, context_for, gpu_layers_for, read_gguf_info
from model_boss.errors import ConfigError

__all__ = ["LaunchSettings", "LlamaServerBackend", "LlamaServerOptions", "launch_settings"]

log = logging.getLogger("model_boss.backends")

KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
SPEC_TYPES = (
    "none",
    "draft-simple",
    "draft-eagle3",
    "draft-mtp",
    "draft-dflash",
    "draft-dspark",
    "ngram-simple",
    "ngram-map-k",
    "ngram-map-k4v",
    "ngram-mod",
    "ngram-cache",
)
ON_OFF_AUTO = ("on", "off", "auto")


def _gpu_layers(reader: EntryReader, key: str) -> str | None:
    path, value = reader.raw(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise reader.error(path, "expected an integer, 'auto' or 'all'", value)
    if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
        return str(int(value))
    if value in ("auto", "all"):
        return str(value)
    raise reader.error(path, "expected an integer, 'auto' or 'all'", value)


def _on_off_auto(reader: EntryReader, key: str) -> str | None:
    path, value = reader.raw(key)
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return None
    if value in ON_OFF_AUTO:
        return str(value)
    raise reader.error(path, "expected on, off, auto (or true/false)", value)


@dataclass(frozen=True)
class LlamaServerOptions:
    """A ``llama_server`` manifest entry: ``path``, ``context_size``, ``chat_template`` at
    the top, the rest in its ``llama_server`` table (names follow llama.cpp's flags)."""

    model_path: Path
    context_size: int | None = None
    chat_template: str | None = None
    n_gpu_layers: str | None = None
    parallel: int | None = None
    threads: int | None = None
    flash_attn: str | None = None
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    mmproj_path: Path | None = None
    image_max_tokens: int | None = None
    draft_model_path: Path | None = None
    spec_type: str | None = None
    spec_draft_n_max: int | None = None
    spec_draft_n_min: int | None = None
    spec_draft_p_min: float | None = None
    spec_draft_ngl: str | None = None
    reasoning: str | None = None
    reasoning_format: str | None = None
    embeddings: bool = False
    pooling: str | None = None
    alias: str | None = None
    process: ProcessOptions = field(default_factory=lambda: ProcessOptions(start_timeout_s=120.0))

    TABLE: ClassVar[str] = "llama_server"

    @classmethod
    def from_manifest(cls, model_id: str, entry: Mapping[str, Any]) -> LlamaServerOptions:
        r = EntryReader(model_id, entry, cls.TABLE)
        model_path = r.path("path", top=True, required=True)
        assert model_path is not None
        options = cls(
            model_path=model_path,
            context_size=r.integer("context_size", minimum=0, top=True),
            chat_template=r.string("chat_template", top=True),
            n_gpu_layers=_gpu_layers(r, "n_gpu_layers"),
            parallel=r.integer("parallel", minimum=1),
            threads=r.integer("threads", minimum=1),
            flash_attn=_on_off_auto(r, "flash_attn"),
            cache_type_k=r.choice("cache_type_k", KV_CACHE_TYPES),
            cache_type_v=r.choice("cache_type_v", KV_CACHE_TYPES),
            mmproj_path=r.path("mmproj_path"),
            image_max_tokens=r.integer("image_max_tokens", minimum=1),
            draft_model_path=r.path("draft_model_path"),
            spec_type=r.choice("spec_type", SPEC_TYPES),
            spec_draft_n_max=r.integer("spec_draft_n_max", minimum=1),
            spec_draft_n_min=r.integer("spec_draft_n_min", minimum=0),
            spec_draft_p_min=r.number("spec_draft_p_min", minimum=0.0, maximum=1.0),
            spec_draft_ngl=_gpu_layers(r, "spec_draft_ngl"),
            reasoning=_on_off_auto(r, "reasoning"),
            reasoning_format=r.string("reasoning_format"),
            embeddings=r.boolean("embeddings", False),
            pooling=r.choice("pooling", ("none", "mean", "cls", "last", "rank")),
            alias=r.string("alias"),
            process=ProcessOptions.read(r, start_timeout_s=120.0),
        )
        r.finish()
        if (
            options.spec_draft_n_max is not None
            and options.spec_draft_n_min is not None
            and options.spec_draft_n_min > options.spec_draft_n_max
        ):
            raise r.error("llama_server.spec_draft_n_min", "must be <= spec_draft_n_max")
        return options

    def command(
        self,
        binary: str,
        port: int,
        model_id: str,
        *,
        context_size: int | None = None,
        n_gpu_layers: str | None = None,
    ) -> list[str]:
        """The llama-server command line (without ``extra_args``); ``context_size`` and
        ``n_gpu_layers`` stand in for the entry's own when given."""
        argv = [binary, "--model", str(self.model_path), "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--alias", self.alias or model_id, "--metrics"]
        argv += ["--no-webui"]
        flags: Sequence[tuple[str, object | None]] = (
            ("--ctx-size", context_size or self.context_size),
            ("--n-gpu-layers", n_gpu_layers or self.n_gpu_layers),
            ("--parallel", self.parallel),
            ("--threads", self.threads),
            ("--flash-attn", self.flash_attn),
            ("--cache-type-k", self.cache_type_k),
            ("--cache-type-v", self.cache_type_v),
            ("--mmproj", self.mmproj_path),
            ("--image-max-tokens", self.image_max_tokens),
            ("--spec-draft-model", self.draft_model_path),
            ("--spec-type", self.spec_type),
            ("--spec-draft-n-max", self.spec_draft_n_max),
            ("--spec-draft-n-min", self.spec_draft_n_min),
            ("--spec-draft-p-min", self.spec_draft_p_min),
            ("--spec-draft-ngl", self.spec_draft_ngl),
            ("--reasoning", self.reasoning),
            ("--reasoning-format", self.reasoning_format),
            ("--pooling", self.pooling),
        )
        for flag, value in flags:
            if value is not None:
                argv += [flag, str(value)]
        if self.chat_template is not None:
            if self.chat_template.endswith(".jinja"):
                argv += ["--chat-template-file", self.chat_template]
            else:
                argv += ["--chat-template", self.chat_template]
        if self.embeddings:
            argv.append("--embeddings")
        return argv


@dataclass(frozen=True)
class LaunchSettings:
    """What the lease makes of one start: ``--ctx-size``, ``--n-gpu-layers`` (None: not
    passed) and whether to pass ``--fit off``."""

    context_size: int
    n_gpu_layers: str | None = None
    fit_off: bool = False


def _model_info(path: Path) -> GgufInfo | None:
    if path.suffix.lower() != ".gguf" or not path.is_file():
        return None
    try:
        return read_gguf_info(path)
    except ConfigError:
        return None  # llama-server says what is wrong with the file when it starts


def _cpu_only(binary: LlamaBinary, budget: LeaseBudget) -> BackendStartError:
    gpus = ", ".join(f"GPU {i}: {mb} MB" for i, mb in sorted(budget.gpu_mb.items()))
    return BackendStartError(
        f"{binary.path} lists no GPU device (`--list-devices`), but this slot leases"
        f" GPU memory ({gpus}). Get a CUDA build: scripts/build-llama-server.sh builds"
        " with CUDA when `nvcc` is on PATH (install the CUDA toolkit, then run it again);"
        f" or point {LLAMA_SERVER_ENV} or the manifest's llama_server.binary at a CUDA"
        " build of llama-server; or set llama_server.n_gpu_layers: 0 to run the model"
        " on the CPU, leasing host RAM instead."
    )


def launch_settings(
    options: LlamaServerOptions,
    budget: LeaseBudget | None,
    binary: LlamaBinary | None = None,
    info: GgufInfo | None = None,
) -> LaunchSettings:
    """The settings a slot's lease gives llama-server (raises BackendStartError for a
    binary without GPU given a GPU slot).

    The context is the one the memory estimate used. Layers: the manifest's
    ``n_gpu_layers`` if set; else on a RAM slot none; on a GPU slot all when the lease covers
    the estimate, otherwise as many as fit (:func:`~model_boss.config.gpu_layers_for`).
    """
    context = context_for(info, options.context_size)
    fit_off = binary is not None and binary.has_fit
    settings = LaunchSettings(context, options.n_gpu_layers, fit_off)
    if budget is None:
        return settings
    no_gpu = binary is not None and binary.gpu_devices == ()  # None: it could not tell
    if binary is not None and no_gpu and budget.on_gpu and options.n_gpu_layers != "0":
        if not budget.gpus_declared:
            raise _cpu_only(binary, budget)
        # declared GPUs (MODEL_BOSS_DEVICES) are the operator's word, e.g. a test partition
        log.warning("%s lists no GPU device; the slot's declared GPUs are trusted", binary.path)
    if options.n_gpu_layers is not None:
        return settings
    if not budget.on_gpu:
        return LaunchSettings(context, "0", fit_off)
    all_layers = "all" if binary is not None and binary.ngl_all else "999"
    if info is None:
        return LaunchSettings(context, all_layers, fit_off)
    # each GPU of a split slot holds its own CUDA context and compute buffers
    room = sum(budget.gpu_mb.values()) - OVERHEAD_MB * (len(budget.gpu_mb) - 1)
    layers = gpu_layers_for(
        info, room, context, options.cache_type_k or "f16", options.cache_type_v or "f16"
    )
    return LaunchSettings(context, all_layers if layers >= info.layers else str(layers), fit_off)


class LlamaServerBackend(ProcessBackend):
    """A llama-server process serving one GGUF model."""

    kind: ClassVar[str] = "llama_server"
    api_key_env: ClassVar[str | None] = "LLAMA_API_KEY"

    def __init__(
        self,
        model_id: str,
        options: LlamaServerOptions,
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
        self.launch: LaunchSettings | None = None
        self.binary_info: LlamaBinary | None = None
        self._capabilities = (
            frozenset({Capability.EMBEDDINGS})
            if options.embeddings
            else frozenset({Capability.CHAT, Capability.COMPLETIONS})
        )

    async def prepare(self) -> None:
        """Ask the binary what it can do (once per binary) and read the model's metadata,
        then derive the launch settings from the lease."""
        binary = self.options.process.binary or str(find_llama_server())
        process = self.options.process
        env = ProcessSpec(
            argv=(binary,), name="probe", env=process.env, library_path=process.library_path
        ).child_env()
        on_gpu = self.budget is not None and self.budget.on_gpu
        probed = await probe_llama_server(binary, env, devices=on_gpu)
        self.binary_info = probed
        info = await asyncio.to_thread(_model_info, self.options.model_path)
        self.launch = launch_settings(self.options, self.budget, probed, info)

    def command(self, port: int) -> list[str]:
        binary = self.options.process.binary or str(find_llama_server())
        launch = self.launch or launch_settings(self.options, self.budget)
        argv = self.options.command(
            binary,
            port,
            self.model_id,
            context_size=launch.context_size,
            n_gpu_layers=launch.n_gpu_layers,
        )
        if self.binary_info is not None and self.binary_info.has_cors_origins:
            # llama-server reflects any Origin by default; an empty list allows none (the
            # key is what protects a binary without the option)
            argv += ["--cors-origins", ""]
        if launch.fit_off:
            # llama.cpp would fit itself to whatever device memory is free, not to the lease
            argv += ["--fit", "off"]
        if self._gpus is not None and len(self._gpus) > 1:
            # The ledger leases an even share on each GPU of a split slot; llama.cpp would
            # otherwise split by each GPU's free memory and overrun the smaller shares.
            argv += ["--tensor-split", ",".join("1" for _ in self._gpus)]
        return argv

    def upstream_model(self) -> str:
        return self.options.alias or self.model_id
