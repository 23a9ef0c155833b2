"""The ``model-boss`` command.

Each command group lives in its own module that exposes ``register(subparsers)``;
the handler a group installs returns the process exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from model_boss.errors import ModelBossError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _parser() -> argparse.ArgumentParser:
    from model_boss.cli import _gpu, _ram

    parser = argparse.ArgumentParser(
        prog="model-boss",
        description="Share GPUs and RAM between programs for ML inference.",
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for module in (_gpu, _ram):
        module.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ModelBossError as exc:
        print(f"model-boss: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
