"""Where the loads go: ``python benchmarks/sched_ablation.py [--json]``.

The equal-size setting of ``benchmarks/sched.py`` (16 models of 4 GB on 24 GB, where the
offline load bound is exact), replayed with variants of the production scheduler, each
changing one thing, to show which part of the gap to the bound comes from where:

* ``production``: the defaults, as in ``benchmarks/sched.py``;
* ``true popularity``: eviction starts from the trace's real request counts
  (``Scheduler.prime_demand``) instead of learning them: the cost of learning;
* ``no priority weight``: ``eviction_priority_exponent=0``: the cost of preferring slots last
  used by lower classes;
* ``drain serving``: ``drain_serving_for_cold=True``: a cold model may wait for a serving
  slot to finish instead of evicting an idle one;
* ``all three``;
* ``no idle unloading``: models stay loaded until memory is needed, instead of being
  unloaded after 5 idle minutes (``stay_warm``, which gives memory back to other programs
  on the ledger; the bound knows nothing of it).

``--setting`` picks another setting of ``benchmarks/sched.py``; the oracle is given only
where the bound is exact (equal sizes).

Beside them, the two references for the same model sequence: the exact bound (Belady) and
the popularity oracle (A0 with the true popularities, the best online policy can expect on
independent requests), both assuming loads and requests take no time.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from model_boss.scheduling import PoolSpec, Scheduler, SchedulerConfig
from model_boss.sim import (
    SETTINGS,
    Setting,
    load_bound,
    make_models,
    scheduler_factory,
    simulate,
    summarize,
)
from model_boss.sim._engine import Policy, PolicyFactory
from model_boss.sim._trace import SimModel, Trace

SETTING = "equal sizes, 16x4GB, 1x24GB"
RATES = (0.25, 1.0, 2.0)
EQUAL_64 = Setting(
    "equal sizes, 64x8GB, 4x80GB", make_models(64, [8000], seed=11), (80000,) * 4, 0.1
)
SETTINGS_HERE = {**SETTINGS, EQUAL_64.name: EQUAL_64}


def primed(config: SchedulerConfig, trace: Trace) -> PolicyFactory:
    counts = collections.Counter(r.model for r in trace.requests)
    make = scheduler_factory(config)

    def factory(models: Sequence[SimModel], pools: Sequence[PoolSpec]) -> Policy:
        policy = make(models, pools)
        assert isinstance(policy, Scheduler)
        policy.prime_demand({m: float(n) for m, n in counts.items()})
        return policy

    return factory


def variants(trace: Trace) -> dict[str, PolicyFactory]:
    base = SchedulerConfig()
    no_weight = SchedulerConfig(eviction_priority_exponent=0.0)
    drain = SchedulerConfig(drain_serving_for_cold=True)
    every = SchedulerConfig(eviction_priority_exponent=0.0, drain_serving_for_cold=True)
    return {
        "production": scheduler_factory(base),
        "true popularity": primed(base, trace),
        "no priority weight": scheduler_factory(no_weight),
        "drain serving": scheduler_factory(drain),
        "all three": primed(every, trace),
        "no idle unloading": scheduler_factory(base, stay_warm_s=math.inf),
    }


def run(n: int, seed: int, name: str = SETTING) -> list[dict[str, Any]]:
    setting = SETTINGS_HERE[name]
    sizes = {m.id: m.size_mb for m in setting.models}
    rows: list[dict[str, Any]] = []
    rates = RATES if name == SETTING else (setting.rate_per_s,)
    for rate in rates:
        trace = setting.make_trace(n, seed, rate)
        bound = load_bound([r.model for r in trace.requests], sizes, setting.gpus_mb)
        oracle = bound.oracle_loads or 0
        for name, factory in variants(trace).items():
            stats = summarize(trace, simulate(factory, trace))
            rows.append(
                {
                    "rate_per_s": rate,
                    "variant": name,
                    "loads": stats.loads,
                    "bound": bound.loads,
                    "bound_exact": bound.exact,
                    "oracle": oracle or None,
                    "over_bound": round(stats.loads / bound.loads, 3),
                    "over_oracle": round(stats.loads / oracle, 3) if oracle else None,
                    "slo5": round(stats.attainment[5], 4),
                    "slo10": round(stats.attainment[10], 4),
                    "p99_urgent_s": round(stats.p99["urgent"], 2),
                    "p99_batch_s": round(stats.p99["batch"], 2),
                }
            )
    return rows


def table(rows: list[dict[str, Any]], name: str) -> str:
    head = (
        f"{'req/s':>5} {'variant':20} {'loads':>6} {'/bound':>7} {'/oracle':>8} "
        f"{'SLO5':>6} {'SLO10':>6} {'p99 urgent':>10} {'p99 batch':>10}"
    )
    exact = "exact" if rows and rows[0]["bound_exact"] else "relaxed (~)"
    lines = [f"{name}: {exact} bound; bound and oracle per rate in the JSON", head]
    lines.append("-" * len(head))
    for r in rows:
        oracle = "-" if r["over_oracle"] is None else f"{r['over_oracle']:.2f}x"
        lines.append(
            f"{r['rate_per_s']:5.3g} {r['variant']:20} {r['loads']:6d} {r['over_bound']:6.2f}x "
            f"{oracle:>8} {r['slo5']:6.3f} {r['slo10']:6.3f} "
            f"{r['p99_urgent_s']:10.1f} {r['p99_batch_s']:10.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/sched_ablation.py", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--setting", default=SETTING, choices=sorted(SETTINGS_HERE))
    args = parser.parse_args(argv)
    rows = run(args.requests, args.seed, args.setting)
    print(table(rows, args.setting))
    if args.json:
        print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
