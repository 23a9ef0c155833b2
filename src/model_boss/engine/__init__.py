"""The coordinator runtime: owns the scheduler, carries out its effects."""

from __future__ import annotations

from model_boss.engine._engine import (
    BackendFactory,
    Engine,
    EngineModel,
    RequestRejected,
    Ticket,
)
from model_boss.engine._from_config import (
    DEMO_MODEL_ID,
    default_models,
    engine_models,
    load_seconds_estimate,
    service_limits,
)
from model_boss.engine._ledger import SlotLedger

__all__ = [
    "DEMO_MODEL_ID",
    "BackendFactory",
    "Engine",
    "EngineModel",
    "RequestRejected",
    "SlotLedger",
    "Ticket",
    "default_models",
    "engine_models",
    "service_limits",
    "load_seconds_estimate",
]
