"""Options shared by the commands that talk to a running coordinator."""

from __future__ import annotations

import argparse

from model_boss.client import DEFAULT_URL, SyncInferenceClient

__all__ = ["add_coordinator_args", "coordinator_client"]


def add_coordinator_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=None,
        help=f"the coordinator (default: $MODEL_BOSS_URL, $COORDINATOR_URL, {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="bearer key (default: $MODEL_BOSS_API_KEY); admin verbs need an admin key",
    )
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")


def coordinator_client(args: argparse.Namespace) -> SyncInferenceClient:
    return SyncInferenceClient(args.url, api_key=args.api_key, client_id="model-boss-cli")
