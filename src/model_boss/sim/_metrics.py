"""What a simulation run measured: latency per class, SLO attainment, loads."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from model_boss.priority import Priority
from model_boss.sim._engine import SimResult
from model_boss.sim._trace import Trace

__all__ = ["SLO_SCALES", "RunStats", "attainment", "class_label", "percentile", "summarize"]

#: A request meets SLO scale ``s`` when latency <= s * its warm isolated latency.
SLO_SCALES: tuple[int, ...] = (5, 10, 20)


def class_label(priority: int) -> str:
    """The class a numeric priority belongs to: the nearest named class at or below it."""
    label = Priority.URGENT.label
    for p in Priority:
        if priority >= p:
            label = p.label
    return label


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[idx]


def attainment(result: SimResult, scale: float) -> float:
    n = len(result.latency)
    if n == 0:
        return 1.0
    ok = 0
    for lat, warm, rej in zip(result.latency, result.warm, result.rejected, strict=True):
        if not rej and lat <= scale * warm:  # NaN (never finished) compares False
            ok += 1
    return ok / n


@dataclass(frozen=True, slots=True)
class RunStats:
    requests: int
    completed: int
    rejected: int
    loads: int
    gb_loaded: float
    p50: dict[str, float]
    p99: dict[str, float]
    max_latency: dict[str, float]
    attainment: dict[int, float]

    @property
    def starved(self) -> list[str]:
        """Classes with a request that never finished."""
        return [c for c, v in self.max_latency.items() if math.isinf(v)]


def summarize(trace: Trace, result: SimResult) -> RunStats:
    by_class: dict[str, list[float]] = {p.label: [] for p in Priority}
    unfinished: set[str] = set()
    for req, lat, rej in zip(trace.requests, result.latency, result.rejected, strict=True):
        label = class_label(req.priority)
        if math.isnan(lat):
            if not rej:
                unfinished.add(label)
            continue
        by_class[label].append(lat)
    p50: dict[str, float] = {}
    p99: dict[str, float] = {}
    mx: dict[str, float] = {}
    for label, values in by_class.items():
        values.sort()
        p50[label] = percentile(values, 0.50)
        p99[label] = percentile(values, 0.99)
        mx[label] = math.inf if label in unfinished else (values[-1] if values else math.nan)
    completed = sum(1 for lat in result.latency if not math.isnan(lat))
    return RunStats(
        requests=len(trace.requests),
        completed=completed,
        rejected=sum(result.rejected),
        loads=result.loads,
        gb_loaded=result.mb_loaded / 1000.0,
        p50=p50,
        p99=p99,
        max_latency=mx,
        attainment={s: attainment(result, s) for s in SLO_SCALES},
    )
