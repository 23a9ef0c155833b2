"""A discrete-event simulator that drives the production scheduler on a virtual clock.

It replays generated or recorded traces against :class:`model_boss.scheduling.Scheduler`
and against baseline policies, and computes an offline bound on model loads.
"""

from __future__ import annotations

from model_boss.sim._baselines import BASELINES, FifoBaseline, baseline_factory
from model_boss.sim._bench import SETTINGS, Setting, goodput, run_bench, scale_check
from model_boss.sim._bound import LoadBound, belady_loads, load_bound, popularity_oracle_loads
from model_boss.sim._engine import (
    Policy,
    PolicyFactory,
    ServiceModel,
    SimResult,
    pool_specs,
    scheduler_factory,
    simulate,
)
from model_boss.sim._metrics import SLO_SCALES, RunStats, attainment, class_label, summarize
from model_boss.sim._trace import (
    DEFAULT_PRIORITY_MIX,
    SimModel,
    Trace,
    TraceRequest,
    TraceSpec,
    generate_trace,
    load_models,
    load_trace,
    make_models,
)

__all__ = [
    "BASELINES",
    "DEFAULT_PRIORITY_MIX",
    "SETTINGS",
    "SLO_SCALES",
    "FifoBaseline",
    "LoadBound",
    "Policy",
    "PolicyFactory",
    "RunStats",
    "ServiceModel",
    "Setting",
    "SimModel",
    "SimResult",
    "Trace",
    "TraceRequest",
    "TraceSpec",
    "attainment",
    "baseline_factory",
    "belady_loads",
    "class_label",
    "generate_trace",
    "goodput",
    "load_bound",
    "popularity_oracle_loads",
    "load_models",
    "load_trace",
    "make_models",
    "pool_specs",
    "run_bench",
    "scale_check",
    "scheduler_factory",
    "simulate",
    "summarize",
]
