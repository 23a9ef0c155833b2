"""Scheduling policy benchmark: ``python benchmarks/sched.py [--json] [--trace ... --models ...]``.

The same as ``model-boss bench sched``; see docs/scheduling.md for the settings and formats.
"""

from __future__ import annotations

import argparse
import sys

from model_boss.sim._bench import add_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/sched.py", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
