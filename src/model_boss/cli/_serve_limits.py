"""``model-boss serve``'s connection limits: flags over the settings' service table."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from model_boss.cli._usage import UsageError

if TYPE_CHECKING:
    from model_boss.api._connection_guard import ConnectionLimits
    from model_boss.config import ServiceSettings

__all__ = ["add_limit_arguments", "connection_limits", "queue_settings"]


def add_limit_arguments(parser: Any) -> None:
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        metavar="N",
        help="open client connections; more are answered 503 and closed (default 1000)",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=None,
        metavar="N",
        help="connections the kernel queues before they are accepted (default 2048)",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="close a connection whose request head is not complete this long (default 10)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=None,
        metavar="N",
        help="requests waiting at once; more are answered 429 (default 10000)",
    )
    parser.add_argument(
        "--keep-alive",
        type=float,
        default=None,
        metavar="SECONDS",
        help="close an idle keep-alive connection after this long (default 5)",
    )


def queue_settings(args: argparse.Namespace, service: ServiceSettings) -> ServiceSettings:
    """The service settings with ``--max-queue`` over the settings' ``max_queue``."""
    if args.max_queue is None:
        return service
    if args.max_queue < 0:
        raise UsageError("serve: --max-queue must be at least 0")
    return dataclasses.replace(service, max_queue=args.max_queue)


def connection_limits(args: argparse.Namespace, service: ServiceSettings) -> ConnectionLimits:
    """The limits to serve with (the open-files limit raised, the cap fitted to it)."""
    from model_boss.api._connection_guard import ConnectionLimits, fit_to_file_limit

    for flag, value, low in (
        ("--max-connections", args.max_connections, 1),
        ("--backlog", args.backlog, 1),
        ("--header-timeout", args.header_timeout, 0.1),
        ("--keep-alive", args.keep_alive, 1),
    ):
        if value is not None and value < low:
            raise UsageError(f"serve: {flag} must be at least {low:g}")
    limits = ConnectionLimits(
        max_connections=args.max_connections or service.max_connections,
        backlog=args.backlog or service.backlog,
        header_timeout_s=args.header_timeout or service.header_timeout_s,
        keep_alive_s=args.keep_alive or service.keep_alive_s,
    )
    return fit_to_file_limit(limits)
