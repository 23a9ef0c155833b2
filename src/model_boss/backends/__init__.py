"""Backends: what a loaded model is (a managed process, or a remote API) and how to talk to it.

One :class:`Backend` protocol; kinds ``llama_server``, ``vllm_serve``, ``openai_remote``,
``diffusers`` and ``simulated``, each with a frozen options dataclass read from a manifest
entry (``from_manifest``), and :func:`create_backend` to pick by name. The subprocess
kinds share :class:`SupervisedProcess` (see DESIGN.md in this folder).
"""

from __future__ import annotations

from model_boss.backends._budget import (
    LeaseBudget,
    cap_cuda_memory,
    format_fractions,
    parse_fractions,
)
from model_boss.backends._demo_model import DEMO_MODEL_FILE, fetch_demo_model
from model_boss.backends._diffusers import DiffusersBackend, DiffusersOptions
from model_boss.backends._errors import (
    AnswerTooLarge,
    BackendCrashed,
    BackendError,
    BackendNotRunning,
    BackendStartError,
    BackendStartTimeout,
    UnsupportedOperation,
    UpstreamError,
)
from model_boss.backends._factory import (
    BACKEND_KINDS,
    BackendOptions,
    backend_options,
    backend_table,
    create_backend,
)
from model_boss.backends._footprint import (
    GpuProcessProbe,
    measure_backend,
    measure_process_tree,
)
from model_boss.backends._http import UpstreamClient, max_answer_bytes, set_max_answer_bytes
from model_boss.backends._llama_server import LlamaServerBackend, LlamaServerOptions
from model_boss.backends._openai_remote import OpenAIRemoteBackend, OpenAIRemoteOptions
from model_boss.backends._paths import cache_root, find_llama_server, models_dir
from model_boss.backends._process_backend import ProcessBackend, ProcessOptions
from model_boss.backends._protocol import (
    Backend,
    BackendHealth,
    BackendState,
    Capability,
    FailureCallback,
    Footprint,
    JSONBody,
)
from model_boss.backends._simulated import SimulatedBackend, SimulatedOptions
from model_boss.backends._supervisor import ProcessSpec, SupervisedProcess, free_port
from model_boss.backends._vllm_serve import VllmServeBackend, VllmServeOptions

__all__ = [
    "BACKEND_KINDS",
    "AnswerTooLarge",
    "DEMO_MODEL_FILE",
    "Backend",
    "BackendCrashed",
    "BackendError",
    "BackendHealth",
    "BackendNotRunning",
    "BackendOptions",
    "BackendStartError",
    "BackendStartTimeout",
    "BackendState",
    "Capability",
    "DiffusersBackend",
    "DiffusersOptions",
    "FailureCallback",
    "Footprint",
    "GpuProcessProbe",
    "JSONBody",
    "LeaseBudget",
    "LlamaServerBackend",
    "LlamaServerOptions",
    "OpenAIRemoteBackend",
    "OpenAIRemoteOptions",
    "ProcessBackend",
    "ProcessOptions",
    "ProcessSpec",
    "SimulatedBackend",
    "SimulatedOptions",
    "SupervisedProcess",
    "UnsupportedOperation",
    "UpstreamClient",
    "UpstreamError",
    "VllmServeBackend",
    "VllmServeOptions",
    "backend_options",
    "backend_table",
    "cache_root",
    "cap_cuda_memory",
    "create_backend",
    "fetch_demo_model",
    "find_llama_server",
    "format_fractions",
    "free_port",
    "measure_backend",
    "measure_process_tree",
    "max_answer_bytes",
    "models_dir",
    "parse_fractions",
    "set_max_answer_bytes",
]
