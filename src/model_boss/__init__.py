"""model-boss: share GPUs and RAM between every program on a machine for ML inference."""

from __future__ import annotations

from model_boss.priority import Priority, parse_priority

__all__ = ["Priority", "parse_priority"]
__version__ = "0.1.0"
