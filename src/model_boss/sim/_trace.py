"""Traces: the requests and models a simulation replays; a generator; JSONL/JSON files.

A request line holds ``t`` (seconds), ``model``, ``priority`` (name or int), ``client``,
``prompt_tokens`` and ``output_tokens``. A model holds ``id``, ``size_mb``, ``load_s`` and
optionally ``pin`` and ``target_inflight``.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from model_boss.priority import Priority, parse_priority

__all__ = [
    "DEFAULT_PRIORITY_MIX",
    "SimModel",
    "Trace",
    "TraceRequest",
    "TraceSpec",
    "generate_trace",
    "load_models",
    "load_trace",
    "make_models",
]

#: Share of requests per priority class in generated traces.
DEFAULT_PRIORITY_MIX: dict[int, float] = {
    int(Priority.URGENT): 0.05,
    int(Priority.HIGH): 0.15,
    int(Priority.NORMAL): 0.50,
    int(Priority.LOW): 0.15,
    int(Priority.BATCH): 0.15,
}


@dataclass(frozen=True, slots=True)
class TraceRequest:
    t: float
    model: str
    priority: int
    client: str
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class SimModel:
    id: str
    size_mb: int
    load_s: float
    pin: bool = False
    target_inflight: int = 4
    replica_max: int = 1


@dataclass(frozen=True, slots=True)
class Trace:
    requests: tuple[TraceRequest, ...]
    models: tuple[SimModel, ...]
    gpus_mb: tuple[int, ...]

    def scaled(self, factor: float) -> Trace:
        """The same requests with every arrival time multiplied by ``factor``."""
        return replace(self, requests=tuple(replace(r, t=r.t * factor) for r in self.requests))

    @property
    def duration_s(self) -> float:
        return self.requests[-1].t if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class TraceSpec:
    """A generated workload: Gamma inter-arrivals, Zipf popularity, a priority mix."""

    n_requests: int
    rate_per_s: float
    cv: float = 1.0
    zipf_alpha: float = 1.0
    priority_mix: Mapping[int, float] | None = None
    n_clients: int = 8
    prompt_tokens_median: int = 400
    output_tokens_median: int = 150
    seed: int = 1


def make_models(
    n: int,
    sizes_mb: Sequence[int],
    *,
    seed: int = 7,
    startup_s: float = 2.0,
    disk_mb_per_s: float = 2000.0,
    target_inflight: int = 4,
    replica_max: int = 1,
) -> tuple[SimModel, ...]:
    """``n`` models with sizes drawn from ``sizes_mb``; load time = start-up + size / bandwidth."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = sizes_mb[i % len(sizes_mb)] if len(sizes_mb) >= n else rng.choice(sizes_mb)
        load_s = startup_s + size / disk_mb_per_s
        model = SimModel(f"m{i:04d}", size, round(load_s, 3), False, target_inflight, replica_max)
        out.append(model)
    rng.shuffle(out)  # popularity rank is independent of size
    return tuple(out)


def generate_trace(spec: TraceSpec, models: Sequence[SimModel], gpus_mb: Sequence[int]) -> Trace:
    """A deterministic trace for ``spec`` (same seed, same trace)."""
    rng = random.Random(spec.seed)
    shape = 1.0 / (spec.cv * spec.cv)
    scale = 1.0 / (spec.rate_per_s * shape)
    weights = [1.0 / (rank**spec.zipf_alpha) for rank in range(1, len(models) + 1)]
    ids = [m.id for m in models]
    mix = spec.priority_mix or DEFAULT_PRIORITY_MIX
    prios = list(mix)
    prio_w = [mix[p] for p in prios]
    clients = [f"client-{i}" for i in range(spec.n_clients)]
    n = spec.n_requests
    chosen = rng.choices(ids, weights=weights, k=n)
    chosen_p = rng.choices(prios, weights=prio_w, k=n)
    t = 0.0
    reqs = []
    mu_p = math.log(spec.prompt_tokens_median)
    mu_o = math.log(spec.output_tokens_median)
    for i in range(n):
        t += rng.gammavariate(shape, scale)
        prompt = max(1, min(32_000, int(rng.lognormvariate(mu_p, 0.8))))
        output = max(1, min(4_000, int(rng.lognormvariate(mu_o, 0.7))))
        reqs.append(TraceRequest(t, chosen[i], chosen_p[i], rng.choice(clients), prompt, output))
    return Trace(tuple(reqs), tuple(models), tuple(gpus_mb))


def load_models(path: str | Path) -> tuple[SimModel, ...]:
    """Models from a JSON file: a list of objects, or ``{"models": [...]}``."""
    data: Any = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        data = data.get("models")
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of models or {{'models': [...]}}")
    out = []
    for i, item in enumerate(data):
        try:
            out.append(
                SimModel(
                    str(item["id"]),
                    int(item["size_mb"]),
                    float(item["load_s"]),
                    bool(item.get("pin", False)),
                    int(item.get("target_inflight", 4)),
                    int(item.get("replica_max", 1)),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: models[{i}]: {exc!r}") from None
    return tuple(out)


def load_trace(path: str | Path, models: Sequence[SimModel], gpus_mb: Sequence[int]) -> Trace:
    """Requests from a JSONL file (one object per line), sorted by ``t``.

    Times may have any origin (Unix timestamps, say): they are shifted so the first request
    arrives at 0, which keeps the trace's rate and its time-scaled copies meaningful.
    """
    reqs = []
    known = {m.id for m in models}
    with Path(path).open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                req = TraceRequest(
                    float(obj["t"]),
                    str(obj["model"]),
                    parse_priority(obj.get("priority", "normal")),
                    str(obj.get("client", "anonymous")),
                    int(obj.get("prompt_tokens", 0)),
                    int(obj.get("output_tokens", 1)),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{lineno}: {exc!r}") from None
            if req.model not in known:
                raise ValueError(f"{path}:{lineno}: unknown model {req.model!r}")
            reqs.append(req)
    reqs.sort(key=lambda r: r.t)
    if reqs and reqs[0].t:
        origin = reqs[0].t
        reqs = [replace(r, t=r.t - origin) for r in reqs]
    return Trace(tuple(reqs), tuple(models), tuple(gpus_mb))
