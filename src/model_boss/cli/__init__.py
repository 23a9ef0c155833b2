"""The ``model-boss`` command.

Each command group lives in its own module that exposes ``register(subparsers)``;
the handler a group installs returns the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from model_boss.errors import ModelBossError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]

# Command-group modules, in the order ``--help`` lists them.
GROUPS = ("_serve", "_model", "_queue", "_gpu", "_ram", "_bench")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="model-boss",
        description="Share GPUs and RAM between programs for ML inference.",
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for name in GROUPS:
        importlib.import_module(f"model_boss.cli.{name}").register(groups)
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
