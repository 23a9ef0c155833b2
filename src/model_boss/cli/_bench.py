"""``model-boss bench``: ``bench sched`` compares scheduling policies in the simulator."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(groups: Any) -> None:
    bench = groups.add_parser("bench", help="benchmarks (scheduling policies in the simulator)")
    verbs = bench.add_subparsers(dest="verb", metavar="VERB", required=True)
    sched = verbs.add_parser(
        "sched",
        help="model-boss's scheduler against ollama-like, FIFO+LRU and fixed-TTL baselines",
        description="Simulate traces against each policy: loads, latency per class, SLO "
        "attainment and goodput. See the README (Benchmarks) for the trace format.",
    )
    from model_boss.sim._bench import add_arguments

    add_arguments(sched)
    sched.set_defaults(handler=_sched)


def _sched(args: argparse.Namespace) -> int:
    from model_boss.sim._bench import run_from_args

    return run_from_args(args)
