"""The coordinator runtime: owns the scheduler, carries out its effects."""

from __future__ import annotations

from model_boss.engine._engine import (
    BackendFactory,
    Engine,
    EngineModel,
    RequestRejected,
    Ticket,
)
from model_boss.engine._ledger import SlotLedger

__all__ = ["BackendFactory", "Engine", "EngineModel", "RequestRejected", "SlotLedger", "Ticket"]
