"""The ``model-boss`` command.

Each command group lives in its own module that exposes ``register(subparsers)``;
the handler a group installs returns the process exit code.

Exit codes: 0 success, 1 a runtime error (the coordinator or the ledger failed, a model
did not load), 2 a usage error (bad arguments: argparse's own, or :class:`UsageError`),
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from model_boss._version import __version__
from model_boss.cli._usage import UsageError
from model_boss.errors import InvalidLeaseRequest, ModelBossError

__all__ = ["UsageError", "main"]

Handler = Callable[[argparse.Namespace], int]

# Command-group modules, in the order ``--help`` lists them.
GROUPS = ("_serve", "_model", "_queue", "_gpu", "_ram", "_bench")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="model-boss",
        description="Share GPUs and RAM between programs for ML inference.",
    )
    parser.add_argument("--version", action="version", version=f"model-boss {__version__}")
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
    except (UsageError, InvalidLeaseRequest) as exc:  # the request came from the arguments
        print(f"model-boss: error: {exc}", file=sys.stderr)
        return 2
    except ModelBossError as exc:
        print(f"model-boss: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
