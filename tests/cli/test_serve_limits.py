"""`model-boss serve --max-queue`: the flag over the settings' service.max_queue."""

from __future__ import annotations

import argparse

import pytest

from model_boss.cli import UsageError
from model_boss.cli._serve_limits import add_limit_arguments, queue_settings
from model_boss.config import ServiceSettings
from model_boss.engine import service_limits


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_limit_arguments(parser)
    return parser.parse_args(argv)


def test_the_queue_bound_comes_from_the_flag_over_the_settings() -> None:
    service = ServiceSettings(max_queue=50)
    assert service_limits(queue_settings(parse(), service)).max_queue == 50
    assert service_limits(queue_settings(parse("--max-queue", "7"), service)).max_queue == 7
    assert service_limits(queue_settings(parse("--max-queue", "0"), service)).max_queue == 0


def test_a_negative_queue_bound_is_refused() -> None:
    with pytest.raises(UsageError, match="--max-queue must be at least 0"):
        queue_settings(parse("--max-queue", "-1"), ServiceSettings())
