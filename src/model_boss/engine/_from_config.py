"""From the validated manifest to what the engine serves; the embedded default manifest."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_boss.backends import backend_table, models_dir, set_max_answer_bytes
from model_boss.backends._demo_model import DEMO_MODEL_FILE
from model_boss.config import ModelSpec, ServiceSettings, Settings, vram_for
from model_boss.engine._engine import EngineModel
from model_boss.errors import ConfigError
from model_boss.scheduling import SPLITTABLE_BACKENDS, ModelProfile, SchedulerConfig

__all__ = [
    "DEMO_MODEL_ID",
    "default_models",
    "engine_models",
    "lease_mb",
    "load_seconds_estimate",
    "service_limits",
]

DEMO_MODEL_ID = "smollm2"

# Rough start-up cost per backend kind, plus weights read at this many MB/s: the
# scheduler weighs reload cost with it until a load has been measured.
_STARTUP_S = {"llama_server": 1.0, "vllm_serve": 60.0, "diffusers": 10.0, "openai_remote": 0.0}
_READ_MB_PER_S = 2000.0


def load_seconds_estimate(backend: str, vram_mb: int) -> float:
    return _STARTUP_S.get(backend, 1.0) + vram_mb / _READ_MB_PER_S


def service_limits(service: ServiceSettings) -> SchedulerConfig:
    """Apply the service's limits: the largest buffered backend answer (``max_answer_mb``,
    for every backend started from now on), and the scheduler config with its queue bound
    (``max_queue``)."""
    set_max_answer_bytes(max(1, round(service.max_answer_mb * 1024 * 1024)))
    return SchedulerConfig(max_queue=service.max_queue)


def _entry(spec: ModelSpec) -> dict[str, Any]:
    """The manifest entry as the backends read it: common fields on top, the backend's
    own table under the name that backend kind reads."""
    entry: dict[str, Any] = {}
    fields = ("path", "context_size", "chat_template", "thinking", "pipeline_type", "dtype", "name")
    for key in fields:
        value = getattr(spec, key)
        if value is not None:
            entry[key] = value
    options = dict(spec.options)
    if spec.category == "embedding" and spec.backend in ("llama_server", "vllm_serve"):
        options.setdefault("embeddings", True)  # serve /v1/embeddings, not chat
    if options:
        entry[backend_table(spec.backend)] = options
    return entry


def lease_mb(spec: ModelSpec, models_root: str, gpu_total_mb: int | None = None) -> int:
    """The MB a slot of ``spec`` leases: ``vram_mb``, or for a ``vllm_serve`` model that
    sets ``gpu_memory_utilization`` that share of a GPU (of ``gpu_total_mb``, times
    ``tensor_parallel_size``) so that the books and vLLM agree, else the estimate."""
    utilization = spec.options.get("gpu_memory_utilization")
    if spec.backend == "vllm_serve" and spec.vram_mb is None and utilization is not None:
        if gpu_total_mb is not None:
            per_gpu = math.ceil(float(utilization) * gpu_total_mb)
            return per_gpu * int(spec.options.get("tensor_parallel_size") or 1)
        try:
            return vram_for(spec, models_root)
        except ConfigError:
            raise ConfigError(
                f"models.{spec.id}.vllm_serve.gpu_memory_utilization: sizes the lease from a"
                " GPU's total, and no GPU was found; set vram_mb instead"
            ) from None
    return vram_for(spec, models_root)


def engine_models(settings: Settings, *, gpu_total_mb: int | None = None) -> list[EngineModel]:
    """The manifest's models as the engine serves them. ``gpu_total_mb`` is the largest GPU's
    total MB (None: no GPU), which sizes the lease of a vLLM model given as a share of a GPU."""
    root = settings.service.models_root or str(models_dir())
    out: list[EngineModel] = []
    for spec in settings.models.values():
        # remote models hold no local memory: 1 MB
        vram = max(1, lease_mb(spec, root, gpu_total_mb))
        profile = ModelProfile(
            model_id=spec.id,
            vram_mb=vram,
            category=spec.category,
            pin=spec.pin,
            stay_warm_s=spec.stay_warm,
            target_inflight=spec.target_inflight,
            replicas=spec.replicas,
            replica_max=spec.replica_max,
            splittable=spec.backend in SPLITTABLE_BACKENDS,
            load_s=load_seconds_estimate(spec.backend, vram),
            enabled=spec.enabled,
            pool_kind=spec.pool_kind,
        )
        entry = _entry(spec)
        if spec.path is not None and not Path(spec.path).expanduser().is_absolute():
            entry["path"] = str(Path(root).expanduser() / spec.path)
        out.append(
            EngineModel(
                profile=profile,
                backend=spec.backend,
                entry=entry,
                modalities=frozenset(spec.modalities),
            )
        )
    return out


def default_models(models: Path | None = None) -> Mapping[str, Any]:
    """The embedded default manifest: the demo model, when it has been pulled."""
    folder = models or models_dir()
    if not (folder / DEMO_MODEL_FILE).is_file():
        return {}
    return {
        DEMO_MODEL_ID: {
            "path": str(folder / DEMO_MODEL_FILE),
            "category": "llm",
            "context_size": 2048,
            "target_inflight": 2,
            "llama_server": {"parallel": 2},
        }
    }
