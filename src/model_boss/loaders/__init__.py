"""The construction kit: load models in your own process under leases from the shared ledger.

:class:`ManagedModelLoader` takes a lease (``GPUBoss``, or ``RAMBoss`` for the CPU) before it
loads, and releases it when the model is unloaded: on request, after ``idle_timeout_s``
without use, when a more urgent holder asks for the memory, or at once if the lease is lost.
Loaders per framework: ``gguf`` (llama.cpp's ``llama-server`` as a child process),
``diffusers``, ``hf`` (Transformers), ``onnx`` (ONNX Runtime), or a :class:`FunctionLoader`
of your own. :class:`IdleResourceManager` and :class:`GPULifespanManager` are the service
glue. See ``DESIGN.md`` beside this file.
"""

from __future__ import annotations

from model_boss.loaders._base import (
    Loader,
    LoaderError,
    ModelLoadFailed,
    ModelUnloaded,
    Target,
    UnknownLoader,
)
from model_boss.loaders._diffusers import DiffusersLoader
from model_boss.loaders._function import FunctionLoader
from model_boss.loaders._gguf import GGUFLoader, GGUFModel
from model_boss.loaders._hf import HFModel, HFModelLoader
from model_boss.loaders._idle import IdleResourceManager
from model_boss.loaders._kinds import KINDS, kind_from_path, loader_for
from model_boss.loaders._lifespan import GPULifespanManager, add_health_route
from model_boss.loaders._managed import ManagedModel, ManagedModelLoader, ModelState, torch_device
from model_boss.loaders._onnx import ONNXLoader

__all__ = [
    "KINDS",
    "DiffusersLoader",
    "FunctionLoader",
    "GGUFLoader",
    "GGUFModel",
    "GPULifespanManager",
    "HFModel",
    "HFModelLoader",
    "IdleResourceManager",
    "Loader",
    "LoaderError",
    "ManagedModel",
    "ManagedModelLoader",
    "ModelLoadFailed",
    "ModelState",
    "ModelUnloaded",
    "ONNXLoader",
    "Target",
    "UnknownLoader",
    "add_health_route",
    "kind_from_path",
    "loader_for",
    "torch_device",
]
