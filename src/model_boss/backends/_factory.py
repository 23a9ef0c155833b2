"""``create_backend``: a manifest entry and a kind name to a Backend."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from model_boss.backends._budget import LeaseBudget
from model_boss.backends._diffusers import DiffusersBackend, DiffusersOptions
from model_boss.backends._llama_server import LlamaServerBackend, LlamaServerOptions
from model_boss.backends._openai_remote import OpenAIRemoteBackend, OpenAIRemoteOptions
from model_boss.backends._protocol import Backend, FailureCallback
from model_boss.backends._simulated import SimulatedBackend, SimulatedOptions
from model_boss.backends._vllm_serve import VllmServeBackend, VllmServeOptions
from model_boss.errors import ConfigError

__all__ = [
    "BACKEND_KINDS",
    "BackendOptions",
    "backend_options",
    "backend_table",
    "create_backend",
]

BackendOptions = (
    LlamaServerOptions
    | VllmServeOptions
    | OpenAIRemoteOptions
    | DiffusersOptions
    | SimulatedOptions
)

_OPTIONS: dict[str, type[BackendOptions]] = {
    "llama_server": LlamaServerOptions,
    "vllm_serve": VllmServeOptions,
    "openai_remote": OpenAIRemoteOptions,
    "diffusers": DiffusersOptions,
    "simulated": SimulatedOptions,
}
BACKEND_KINDS: tuple[str, ...] = tuple(_OPTIONS)


def _normalise(kind: str) -> str:
    name = kind.replace("-", "_")
    if name not in _OPTIONS:
        raise ConfigError(f"unknown backend kind {kind!r}; known: {', '.join(BACKEND_KINDS)}")
    return name


def backend_table(kind: str) -> str:
    """The name of the manifest-entry table ``kind`` reads its own options from."""
    return _OPTIONS[_normalise(kind)].TABLE


def backend_options(kind: str, model_id: str, entry: Mapping[str, Any]) -> BackendOptions:
    """Validate ``entry`` for ``kind`` (raises ConfigError) without creating anything."""
    return _OPTIONS[_normalise(kind)].from_manifest(model_id, entry)


def create_backend(
    kind: str,
    model_id: str,
    entry: Mapping[str, Any],
    *,
    gpus: Sequence[int] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    on_failure: FailureCallback | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    budget: LeaseBudget | None = None,
) -> Backend:
    """A stopped backend of ``kind`` (``llama_server``, ``vllm_serve``, ``openai_remote``,
    ``diffusers``, ``simulated``; ``llama-server`` spelling accepted) for one manifest entry.

    ``gpus`` are the physical GPU indices of the slot (``CUDA_VISIBLE_DEVICES`` of the
    process; ``()`` hides all GPUs, None inherits). ``log_dir`` holds the process logs.
    ``on_failure`` is called at once when a ready backend's process dies. ``sleep`` is
    the ``simulated`` kind's clock (a simulator passes its virtual one). ``budget`` is
    what the slot's lease holds on each device; the process kinds derive their memory
    settings from it (None: no lease known, the manifest's settings alone).
    """
    options = backend_options(kind, model_id, entry)
    process_args: dict[str, Any] = {
        "gpus": gpus,
        "log_dir": log_dir,
        "on_failure": on_failure,
        "budget": budget,
    }
    if isinstance(options, LlamaServerOptions):
        return LlamaServerBackend(model_id, options, **process_args)
    if isinstance(options, VllmServeOptions):
        return VllmServeBackend(model_id, options, **process_args)
    if isinstance(options, DiffusersOptions):
        return DiffusersBackend(model_id, options, **process_args)
    if isinstance(options, OpenAIRemoteOptions):
        return OpenAIRemoteBackend(model_id, options, on_failure=on_failure, budget=budget)
    if sleep is None:
        return SimulatedBackend(model_id, options, on_failure=on_failure, budget=budget)
    return SimulatedBackend(model_id, options, on_failure=on_failure, sleep=sleep, budget=budget)
