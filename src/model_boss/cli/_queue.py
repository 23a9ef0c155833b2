"""``model-boss queue status``: what waits in a running coordinator's queue, and what runs."""

from __future__ import annotations

import argparse
from typing import Any

from model_boss.cli._coordinator_args import add_coordinator_args, coordinator_client
from model_boss.cli._table import print_json, render_table
from model_boss.priority import Priority

__all__ = ["register"]

WAITING_HEADERS = ("position", "model", "priority", "client", "age_s")
RUNNING_HEADERS = ("model", "priority", "client", "running_s")
CLIENT_HEADERS = ("client", "requests", "errors", "rejected", "cancelled", "priority", "models")


def register(groups: Any) -> None:
    queue = groups.add_parser("queue", help="a running coordinator's request queue")
    verbs = queue.add_subparsers(dest="verb", metavar="VERB", required=True)
    status = verbs.add_parser(
        "status", help="waiting requests (position, priority, client, age) and running ones"
    )
    status.add_argument(
        "--clients", action="store_true", help="also each client's request counts (requestors)"
    )
    add_coordinator_args(status)
    status.set_defaults(handler=_status)


def priority_label(value: Any) -> str:
    """``10`` -> ``normal``; a priority between the named classes stays a number."""
    if isinstance(value, int) and value in Priority._value2member_map_:
        return Priority(value).label
    return str(value)


def waiting_rows(waiting: list[dict[str, Any]]) -> list[list[object]]:
    return [
        [
            w.get("position", "?"),
            w.get("model", "?"),
            priority_label(w.get("priority")),
            w.get("client", "?"),
            f"{float(w.get('age_s', 0.0)):.1f}",
        ]
        for w in waiting
    ]


def running_rows(running: list[dict[str, Any]]) -> list[list[object]]:
    return [
        [
            r.get("model", "?"),
            priority_label(r.get("priority")),
            r.get("client", "?"),
            f"{float(r.get('running_s', 0.0)):.1f}",
        ]
        for r in running
    ]


def client_rows(clients: list[dict[str, Any]]) -> list[list[object]]:
    return [
        [
            c.get("client_id", "?"),
            c.get("requests", 0),
            c.get("errors", 0),
            c.get("rejected", 0),
            c.get("cancelled", 0),
            priority_label(c.get("last_priority")),
            " ".join(f"{m}:{n}" for m, n in sorted((c.get("models") or {}).items())) or "-",
        ]
        for c in clients
    ]


def _status(args: argparse.Namespace) -> int:
    with coordinator_client(args) as client:
        queue = client.queue()
        clients = client.requestors() if args.clients else None
    if args.json:
        extra = {"clients": clients} if clients is not None else {}
        print_json({"url": client.base_url, **queue, **extra})
        return 0
    waiting = list(queue.get("waiting") or [])
    running = list(queue.get("running") or [])
    print(f"coordinator: {client.base_url}")
    print(f"waiting: {len(waiting)}  running: {len(running)}")
    if waiting:
        print()
        print(render_table(WAITING_HEADERS, waiting_rows(waiting)))
    if running:
        print()
        print(render_table(RUNNING_HEADERS, running_rows(running)))
    if clients:
        print()
        print(render_table(CLIENT_HEADERS, client_rows(clients)))
    return 0
