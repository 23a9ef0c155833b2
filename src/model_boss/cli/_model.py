"""``model-boss model list|load|unload``: the models of a running coordinator."""

from __future__ import annotations

import argparse
import json
from typing import Any

from model_boss.cli._coordinator_args import add_coordinator_args, coordinator_client
from model_boss.cli._table import print_json, render_table

__all__ = ["register"]

LIST_HEADERS = ("id", "backend", "state", "replicas", "waiting", "running", "footprint_mb")


def register(groups: Any) -> None:
    model = groups.add_parser(
        "model", help="models: list, load and unload on a running coordinator; pull the demo model"
    )
    verbs = model.add_subparsers(dest="verb", metavar="VERB", required=True)

    listing = verbs.add_parser(
        "list", help="every configured model: backend, state, replicas, queue, footprint"
    )
    add_coordinator_args(listing)
    listing.set_defaults(handler=_list)

    load = verbs.add_parser("load", help="load a model, optionally with live overrides")
    load.add_argument("model", help="the model's id")
    load.add_argument("--replicas", type=int, default=None, help="how many replicas to load")
    load.add_argument(
        "--set",
        dest="overrides",
        type=parse_override,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a live override such as context_size=8192 (repeatable; VALUE is read as JSON "
        "when it can be, else as a string); `model list --json` names the allowed keys",
    )
    load.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="answer at once instead of when the model is ready",
    )
    load.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds the coordinator waits for the model to be ready (default 600)",
    )
    add_coordinator_args(load)
    load.set_defaults(handler=_load)

    pull = verbs.add_parser(
        "pull", help="fetch a model into the model cache (known: smollm2, the demo model)"
    )
    pull.add_argument("name", choices=["smollm2"], help="which model")
    pull.set_defaults(handler=_pull)

    unload = verbs.add_parser("unload", help="unload a model once its running requests finish")
    unload.add_argument("model", help="the model's id")
    add_coordinator_args(unload)
    unload.set_defaults(handler=_unload)


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> ``(KEY, VALUE)``, VALUE read as JSON if it is JSON (8192, true, 0.9)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def list_rows(models: list[dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for m in models:
        replicas = m.get("replicas") or {}
        queue = m.get("queue") or {}
        rows.append(
            [
                m.get("id", "?"),
                m.get("backend", "?"),
                m.get("state", "?"),
                f"{replicas.get('loaded', 0)}/{replicas.get('max', '?')}",
                queue.get("waiting", 0),
                queue.get("running", 0),
                m.get("footprint_mb", "?"),
            ]
        )
    return rows


def _list(args: argparse.Namespace) -> int:
    with coordinator_client(args) as client:
        models = client.admin_models()
    if args.json:
        print_json({"url": client.base_url, "models": models})
        return 0
    print(f"coordinator: {client.base_url}")
    if not models:
        print("no models configured")
        return 0
    print(render_table(LIST_HEADERS, list_rows(models)))
    return 0


def _load(args: argparse.Namespace) -> int:
    overrides = dict(args.overrides)
    with coordinator_client(args) as client:
        result = client.load(
            args.model,
            replicas=args.replicas,
            overrides=overrides or None,
            wait=args.wait,
            timeout_s=args.timeout,
        )
    if args.json:
        print_json(result)
        return 0
    verb = "loaded" if args.wait else "asked to load"
    extras = [f"replicas={args.replicas}"] if args.replicas is not None else []
    extras += [f"{k}={json.dumps(v)}" for k, v in sorted(overrides.items())]
    suffix = f" ({', '.join(extras)})" if extras else ""
    print(f"{verb} {result.get('id', args.model)}{suffix}: {result.get('state', '?')}")
    return 0


def _unload(args: argparse.Namespace) -> int:
    with coordinator_client(args) as client:
        result = client.unload(args.model)
    if args.json:
        print_json(result)
        return 0
    print(f"unloading {result.get('id', args.model)}: {result.get('state', '?')}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from model_boss.backends import fetch_demo_model

    path = fetch_demo_model()
    print(f"{args.name}: {path} ({path.stat().st_size / 1e6:.0f} MB)")
    print("`model-boss serve` with no settings serves it as `smollm2`")
    return 0
