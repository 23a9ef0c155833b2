"""The policy benchmark behind ``model-boss bench sched`` and ``benchmarks/sched.py``."""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model_boss.sim._baselines import BASELINES, baseline_factory
from model_boss.sim._bound import load_bound
from model_boss.sim._engine import PolicyFactory, scheduler_factory, simulate
from model_boss.sim._metrics import SLO_SCALES, RunStats, attainment, summarize
from model_boss.sim._trace import (
    SimModel,
    Trace,
    TraceSpec,
    generate_trace,
    load_models,
    load_trace,
    make_models,
)

__all__ = ["SETTINGS", "Setting", "add_arguments", "goodput", "run_bench", "run_from_args"]

OURS = "model-boss"
#: Goodput is searched at these SLO scales: the highest rate with >= 99% attainment.
GOODPUT_SLO_SCALES = (10, 20)
GOODPUT_TARGET = 0.99


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    models: tuple[SimModel, ...]
    gpus_mb: tuple[int, ...]
    rate_per_s: float
    cv: float = 1.0
    zipf_alpha: float = 1.0
    trace: Trace | None = None  # a replayed trace instead of a generated one

    def make_trace(self, n: int, seed: int, rate: float | None = None) -> Trace:
        if self.trace is not None:
            base = self.trace
            own = len(base.requests) / max(base.duration_s, 1e-9)
            return base if rate is None else base.scaled(own / rate)
        spec = TraceSpec(
            n, rate or self.rate_per_s, cv=self.cv, zipf_alpha=self.zipf_alpha, seed=seed
        )
        return generate_trace(spec, self.models, self.gpus_mb)


_MIXED_16 = make_models(16, [1500, 2500, 4500, 5000, 8000], seed=7)
SETTINGS: dict[str, Setting] = {
    "16 models, 1x24GB": Setting("16 models, 1x24GB", _MIXED_16, (24000,), 0.25),
    "64 models, 4x80GB": Setting(
        "64 models, 4x80GB",
        make_models(64, [2000, 4000, 8000, 16000, 24000, 40000], seed=11),
        (80000,) * 4,
        0.1,
    ),
    "bursty CV=4, 16 models, 1x24GB": Setting(
        "bursty CV=4, 16 models, 1x24GB", _MIXED_16, (24000,), 0.25, cv=4.0
    ),
    "equal sizes, 16x4GB, 1x24GB": Setting(
        "equal sizes, 16x4GB, 1x24GB", make_models(16, [4000], seed=7), (24000,), 0.25
    ),
    "equal sizes, heavy load 2/s": Setting(
        "equal sizes, heavy load 2/s", make_models(16, [4000], seed=7), (24000,), 2.0
    ),
}


def policies() -> dict[str, PolicyFactory]:
    out: dict[str, PolicyFactory] = {OURS: scheduler_factory()}
    out.update({name: baseline_factory(name) for name in BASELINES})
    return out


def goodput(
    factory: PolicyFactory,
    setting: Setting,
    n: int,
    seed: int,
    *,
    slo_scale: float = 10,
    steps: int = 5,
) -> float:
    """The highest rate (req/s) with >= 99% of requests within ``slo_scale``; 0 if none.

    A bounded search: doubling or halving from the setting's rate (at most 6 times), then
    ``steps`` geometric bisections. Each probe replays the same trace, time-scaled.
    """

    def ok(rate: float) -> bool:
        result = simulate(factory, setting.make_trace(n, seed, rate))
        return attainment(result, slo_scale) >= GOODPUT_TARGET

    rate = setting.rate_per_s
    if ok(rate):
        lo, hi = rate, rate * 2
        for _ in range(6):
            if not ok(hi):
                break
            lo, hi = hi, hi * 2
        else:
            return lo
    else:
        lo, hi = rate / 2, rate
        for _ in range(6):
            if ok(lo):
                break
            lo, hi = lo / 2, lo
        else:
            return 0.0
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _row(
    setting: Setting, policy: str, stats: RunStats, bound: Any, gp: dict[str, float] | None
) -> dict[str, Any]:
    return {
        "setting": setting.name,
        "policy": policy,
        "rate_per_s": round(setting.rate_per_s, 4),
        "requests": stats.requests,
        "rejected": stats.rejected,
        "loads": stats.loads,
        "gb_loaded": round(stats.gb_loaded, 1),
        "load_bound": bound.loads,
        "bound_exact": bound.exact,
        "loads_over_bound": round(stats.loads / max(1, bound.loads), 3),
        "oracle_loads": bound.oracle_loads,
        "p50_s": {k: round(v, 2) for k, v in stats.p50.items()},
        "p99_s": {k: round(v, 2) for k, v in stats.p99.items()},
        "starved_classes": stats.starved,
        "slo_attainment": {str(k): round(v, 4) for k, v in stats.attainment.items()},
        "goodput_per_s": gp,
    }


def run_bench(
    settings: Sequence[Setting], *, n: int, goodput_n: int, seed: int, with_goodput: bool = True
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for setting in settings:
        trace = setting.make_trace(n, seed)
        sizes = {m.id: m.size_mb for m in setting.models}
        bound = load_bound([r.model for r in trace.requests], sizes, setting.gpus_mb)
        for name, factory in policies().items():
            stats = summarize(trace, simulate(factory, trace))
            gp: dict[str, float] | None = None
            if with_goodput:
                gp = {
                    str(scale): round(
                        goodput(factory, setting, goodput_n, seed, slo_scale=scale), 4
                    )
                    for scale in GOODPUT_SLO_SCALES
                }
            rows.append(_row(setting, name, stats, bound, gp))
    return {"rows": rows, "targets": _targets(rows)}


#: The setting whose loads are swept over request rates (its load bound is exact).
SWEEP_SETTING = "equal sizes, 16x4GB, 1x24GB"
SWEEP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)


def load_sweep(setting: Setting, *, n: int, seed: int) -> list[dict[str, Any]]:
    """Loads of every policy, the exact bound and the popularity oracle at each sweep rate.

    The same trace, time-scaled: the model sequence (so both references) is the same at every
    rate; what changes is how many requests overlap in time.
    """
    out: list[dict[str, Any]] = []
    sizes = {m.id: m.size_mb for m in setting.models}
    factories = policies()
    for rate in SWEEP_RATES:
        trace = setting.make_trace(n, seed, rate)
        bound = load_bound([r.model for r in trace.requests], sizes, setting.gpus_mb)
        results = {name: simulate(f, trace) for name, f in factories.items()}
        loads = {name: r.loads for name, r in results.items()}
        out.append(
            {
                "rate_per_s": rate,
                "bound": bound.loads,
                "oracle": bound.oracle_loads,
                "loads": loads,
                "over_bound": {k: round(v / max(1, bound.loads), 3) for k, v in loads.items()},
                "slo10_attainment": {k: round(attainment(r, 10), 4) for k, r in results.items()},
            }
        )
    return out


def format_sweep(sweep: list[dict[str, Any]]) -> str:
    names = list(sweep[0]["loads"]) if sweep else []
    head = f"{'req/s':>6} {'bound':>6} {'oracle':>12} " + " ".join(f"{n:>25}" for n in names)
    title = f"loads vs request rate ({SWEEP_SETTING}): loads, x the exact bound, SLO10 attainment"
    lines = [title, head, "-" * len(head)]
    for row in sweep:
        b = max(1, row["bound"])
        oracle = f"{row['oracle']} {row['oracle'] / b:.2f}x" if row["oracle"] else "-"
        cells = " ".join(
            f"{row['loads'][n]:>11} {row['over_bound'][n]:5.2f}x {row['slo10_attainment'][n]:6.3f}"
            for n in names
        )
        lines.append(f"{row['rate_per_s']:6.3g} {row['bound']:6d} {oracle:>12} {cells}")
    return "\n".join(lines)


def _ratio(num: float, den: float) -> float:
    """``num / den`` rounded; inf when only ``den`` is 0, nan when both are."""
    if den:
        return round(num / den, 2)
    return math.inf if num else math.nan


def _targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for setting in dict.fromkeys(r["setting"] for r in rows):
        by = {r["policy"]: r for r in rows if r["setting"] == setting}
        ours, base = by.get(OURS), by.get("ollama-like")
        if ours is None or base is None:
            continue
        t: dict[str, Any] = {}
        if ours["goodput_per_s"] is not None:
            for scale in GOODPUT_SLO_SCALES:
                mine, theirs = ours["goodput_per_s"][str(scale)], base["goodput_per_s"][str(scale)]
                t[f"goodput{scale}_vs_ollama"] = _ratio(mine, theirs)
        t["urgent_p99_gain_vs_ollama"] = _ratio(base["p99_s"]["urgent"], ours["p99_s"]["urgent"])
        t["starved_classes"] = ours["starved_classes"]
        if ours["bound_exact"]:
            t["loads_over_exact_bound"] = ours["loads_over_bound"]
            if ours["oracle_loads"]:
                oracle = ours["oracle_loads"]
                t["popularity_oracle_over_exact_bound"] = round(
                    oracle / max(1, ours["load_bound"]), 3
                )
                t["loads_over_popularity_oracle"] = round(ours["loads"] / oracle, 3)
        out[setting] = t
    return out


def format_table(report: dict[str, Any]) -> str:
    head = (
        f"{'setting':32} {'policy':12} {'loads':>6} {'GB':>7} {'/bound':>6} "
        f"{'p50 u/h/n/l/b (s)':>31} {'p99 u/h/n/l/b (s)':>36} "
        + " ".join(f"{'SLO' + str(s):>6}" for s in SLO_SCALES)
        + f" {'goodput@10/@20':>15}"
    )
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        p50 = "/".join(_fmt(v) for v in r["p50_s"].values())
        p99 = "/".join(_fmt(v) for v in r["p99_s"].values())
        att = " ".join(f"{r['slo_attainment'][str(s)]:6.3f}" for s in SLO_SCALES)
        g = r["goodput_per_s"]
        gp = "-" if g is None else "/".join(f"{g[str(s)]:.3f}" for s in GOODPUT_SLO_SCALES)
        mark = "" if r["bound_exact"] else "~"
        lines.append(
            f"{r['setting']:32} {r['policy']:12} {r['loads']:6d} {r['gb_loaded']:7.1f} "
            f"{mark + format(r['loads_over_bound'], '.2f'):>6} {p50:>31} {p99:>36} {att} {gp:>15}"
        )
    lines.append("")
    for setting, t in report["targets"].items():
        lines.append(f"{setting}: " + ", ".join(f"{k}={v}" for k, v in t.items()))
    if "scale" in report:
        s = report["scale"]
        lines.append(
            f"scale: {s['requests']} requests over {s['models']} models in {s['seconds']:.1f} s "
            f"({s['events']} events)"
        )
    return "\n".join(lines)


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def scale_check(n: int = 1_000_000, n_models: int = 1000, seed: int = 1) -> dict[str, Any]:
    """CPU seconds the production scheduler needs for ``n`` requests over ``n_models`` models.

    The workload: sizes 1-16 GB on 8 x 80 GB, Zipf alpha 1.1, 10 requests/s, Poisson
    arrivals, up to 4 replicas per model (so the most popular model is not overloaded).
    """
    models = make_models(n_models, [1000, 2000, 4000, 8000, 16000], seed=seed, replica_max=4)
    gpus = (80000,) * 8
    trace = generate_trace(TraceSpec(n, 10.0, zipf_alpha=1.1, seed=seed), models, gpus)
    start = time.process_time()
    result = simulate(scheduler_factory(), trace)
    seconds = time.process_time() - start
    return {
        "requests": n,
        "models": n_models,
        "seconds": round(seconds, 2),
        "events": result.events,
        "loads": result.loads,
        "slo10_attainment": round(attainment(result, 10), 4),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--trace", help="replay this JSONL request trace (needs --models)")
    parser.add_argument("--models", help="JSON list of models: id, size_mb, load_s, pin")
    parser.add_argument("--gpus", default="24000", help="GPU memory in MB, comma separated")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per run")
    parser.add_argument("--goodput-requests", type=int, default=4_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--setting", action="append", help="only these settings (by name)")
    parser.add_argument("--no-goodput", action="store_true", help="skip the goodput search")
    parser.add_argument("--scale", action="store_true", help="also time 1M requests/1000 models")
    parser.add_argument(
        "--no-sweep", action="store_true", help=f"skip the loads-vs-rate sweep of {SWEEP_SETTING!r}"
    )


def run_from_args(args: argparse.Namespace) -> int:
    if args.trace or args.models:
        if not (args.trace and args.models):
            raise SystemExit("--trace and --models go together")
        gpus = tuple(int(x) for x in str(args.gpus).split(",") if x.strip())
        models = load_models(args.models)
        trace = load_trace(args.trace, models, gpus)
        rate = len(trace.requests) / max(trace.duration_s, 1e-9)
        chosen = [Setting(f"trace {args.trace}", models, gpus, rate, trace=trace)]
    else:
        names = args.setting or list(SETTINGS)
        unknown = [n for n in names if n not in SETTINGS]
        if unknown:
            raise SystemExit(f"unknown setting(s) {unknown}; known: {list(SETTINGS)}")
        chosen = [SETTINGS[n] for n in names]
    report = run_bench(
        chosen,
        n=args.requests,
        goodput_n=args.goodput_requests,
        seed=args.seed,
        with_goodput=not args.no_goodput,
    )
    if not args.no_sweep and any(st.name == SWEEP_SETTING for st in chosen):
        report["load_sweep"] = load_sweep(SETTINGS[SWEEP_SETTING], n=args.requests, seed=args.seed)
    if args.scale:
        report["scale"] = scale_check()
    print(format_table(report))
    if "load_sweep" in report:
        print()
        print(format_sweep(report["load_sweep"]))
    if args.json:
        print(json.dumps(_finite(report), allow_nan=False))
    return 0


def _finite(value: Any) -> Any:
    """JSON has no inf/nan: write them as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
