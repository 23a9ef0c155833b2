"""The ``vllm_serve`` kind: a managed ``vllm serve`` process.

vLLM keeps its port closed while it loads; it is ready when ``GET /health`` answers 200
*and* ``GET /v1/models`` lists the served model name. On coordinator death it gets SIGTERM
(not SIGKILL) so that it can take its own engine worker processes down with it.

Not run on the development machines (no GPU): tests drive a fake executable that follows
the same start-up protocol (tests/backends/fakes/vllm).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from model_boss.backends._budget import LeaseBudget
from model_boss.backends._http import UpstreamClient
from model_boss.backends._options import EntryReader
from model_boss.backends._process_backend import ProcessBackend, ProcessOptions
from model_boss.backends._protocol import Capability, FailureCallback
from model_boss.errors import ConfigError

__all__ = ["VllmServeBackend", "VllmServeOptions", "memory_utilization"]

DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")


@dataclass(frozen=True)
class VllmServeOptions:
    """A ``vllm_serve`` entry: its ``vllm`` table maps to ``vllm serve`` arguments.

    ``model`` (a hub id or local path) defaults to the entry's ``path``; ``max_model_len``
    defaults to ``context_size``. The speculative fields become ``--speculative-config``
    JSON; ``speculative_config`` adds any other key of that JSON verbatim.
    """

    model: str
    served_model_name: str
    dtype: str | None = None
    gpu_memory_utilization: float | None = None
    kv_cache_memory_bytes: int | None = None
    kv_cache_dtype: str | None = None
    max_model_len: int | None = None
    tensor_parallel_size: int | None = None
    trust_remote_code: bool = False
    limit_mm_per_prompt: Mapping[str, Any] | None = None
    mm_processor_kwargs: Mapping[str, Any] | None = None
    speculative_config: Mapping[str, Any] | None = None
    embeddings: bool = False
    process: ProcessOptions = field(default_factory=lambda: ProcessOptions(start_timeout_s=900.0))

    TABLE: ClassVar[str] = "vllm_serve"

    @classmethod
    def from_manifest(cls, model_id: str, entry: Mapping[str, Any]) -> VllmServeOptions:
        r = EntryReader(model_id, entry, cls.TABLE)
        model = r.string("model") or r.string("path", top=True)
        if model is None:
            raise r.error("vllm_serve.model", "is required (or set path)")
        speculative = dict(r.json_table("speculative_config") or {})
        for key, value in (
            ("method", r.string("speculative_method")),
            ("model", r.string("speculative_model")),
            ("num_speculative_tokens", r.integer("num_speculative_tokens", minimum=1)),
        ):
            if value is not None:
                speculative[key] = value
        options = cls(
            model=model,
            served_model_name=r.string("served_model_name") or model_id,
            dtype=r.choice("dtype", DTYPES),
            gpu_memory_utilization=r.number(
                "gpu_memory_utilization", minimum=0.0, maximum=1.0, exclusive_minimum=True
            ),
            kv_cache_memory_bytes=r.integer("kv_cache_memory_bytes", minimum=1),
            kv_cache_dtype=r.string("kv_cache_dtype"),
            max_model_len=r.integer("max_model_len", minimum=1)
            or r.integer("context_size", minimum=1, top=True),
            tensor_parallel_size=r.integer("tensor_parallel_size", minimum=1),
            trust_remote_code=r.boolean("trust_remote_code", False),
            limit_mm_per_prompt=r.json_table("limit_mm_per_prompt"),
            mm_processor_kwargs=r.json_table("mm_processor_kwargs"),
            speculative_config=speculative or None,
            embeddings=r.boolean("embeddings", False),
            process=ProcessOptions.read(r, start_timeout_s=900.0),
        )
        r.finish()
        return options

    def command(self, binary: str, port: int) -> list[str]:
        """The ``vllm serve`` command line (without ``extra_args``)."""
        argv = [binary, "serve", self.model, "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--served-model-name", self.served_model_name]
        for flag, value in (
            ("--dtype", self.dtype),
            ("--gpu-memory-utilization", self.gpu_memory_utilization),
            ("--kv-cache-memory-bytes", self.kv_cache_memory_bytes),
            ("--kv-cache-dtype", self.kv_cache_dtype),
            ("--max-model-len", self.max_model_len),
            ("--tensor-parallel-size", self.tensor_parallel_size),
        ):
            if value is not None:
                argv += [flag, str(value)]
        for flag, table in (
            ("--limit-mm-per-prompt", self.limit_mm_per_prompt),
            ("--mm-processor-kwargs", self.mm_processor_kwargs),
            ("--speculative-config", self.speculative_config),
        ):
            if table is not None:
                argv += [flag, json.dumps(table, separators=(",", ":"), sort_keys=True)]
        if self.trust_remote_code:
            argv.append("--trust-remote-code")
        return argv


def memory_utilization(options: VllmServeOptions, budget: LeaseBudget | None) -> float | None:
    """``--gpu-memory-utilization`` from the lease: the leased share of each GPU (the
    smallest over a split slot's GPUs, rounded down to 3 decimals), unless the manifest sets
    ``gpu_memory_utilization`` or ``kv_cache_memory_bytes`` itself (None: pass nothing).

    vLLM would otherwise take 90% of every GPU it sees, whatever the lease."""
    if options.gpu_memory_utilization is not None or options.kv_cache_memory_bytes is not None:
        return None
    return None if budget is None else budget.smallest_share(3)


class VllmServeBackend(ProcessBackend):
    """A ``vllm serve`` process serving one model."""

    kind: ClassVar[str] = "vllm_serve"
    death_signal: ClassVar[signal.Signals] = signal.SIGTERM
    api_key_env: ClassVar[str | None] = "VLLM_API_KEY"

    def __init__(
        self,
        model_id: str,
        options: VllmServeOptions,
        *,
        gpus: Sequence[int] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        on_failure: FailureCallback | None = None,
        budget: LeaseBudget | None = None,
    ) -> None:
        tp = options.tensor_parallel_size
        if gpus is not None and tp is not None and tp > len(gpus):
            raise ConfigError(
                f"model {model_id!r}: vllm.tensor_parallel_size: {tp} needs {tp} GPUs,"
                f" the slot has {len(gpus)}"
            )
        super().__init__(
            model_id,
            options.process,
            gpus=gpus,
            log_dir=log_dir,
            on_failure=on_failure,
            budget=budget,
        )
        self.options = options
        self._capabilities = (
            frozenset({Capability.EMBEDDINGS})
            if options.embeddings
            else frozenset({Capability.CHAT, Capability.COMPLETIONS})
        )

    def command(self, port: int) -> list[str]:
        argv = self.options.command(self.options.process.binary or "vllm", port)
        utilization = memory_utilization(self.options, self.budget)
        if utilization is not None:
            argv += ["--gpu-memory-utilization", str(utilization)]
        if (
            self.options.tensor_parallel_size is None
            and self._gpus is not None
            and len(self._gpus) > 1
        ):
            # A slot split over several GPUs holds an even share of each: spread the model
            # over all of them (vLLM's default of 1 would put it all on the first).
            argv += ["--tensor-parallel-size", str(len(self._gpus))]
        return argv

    def upstream_model(self) -> str:
        return self.options.served_model_name

    async def is_ready(self, client: UpstreamClient) -> bool:
        status, _ = await client.get_status("/health")
        if status != 200:
            return False
        status, body = await client.get_status("/v1/models")
        if status != 200:
            return False
        try:
            listed = json.loads(body).get("data", [])
            return any(m.get("id") == self.options.served_model_name for m in listed)
        except (ValueError, AttributeError):
            return False
