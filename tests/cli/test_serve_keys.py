"""Where `model-boss serve` takes its keys from: argv, key files, environment."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from model_boss.cli._serve_keys import add_key_arguments, read_key_file, service_keys
from model_boss.errors import ConfigError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_key_arguments(parser)
    return parser.parse_args(argv)


def key_file(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_key_files_skip_comments_and_blank_lines(tmp_path: Path) -> None:
    path = key_file(tmp_path / "keys", "# team a\n  k1  \n\nk2\n")
    assert read_key_file(path) == ["k1", "k2"]


def test_the_command_line_wins_over_the_environment(tmp_path: Path) -> None:
    users = key_file(tmp_path / "users", "u1\n")
    env = {"MODEL_BOSS_API_KEYS": "e1,e2", "MODEL_BOSS_ADMIN_KEYS": "a1"}
    assert service_keys(parse("--api-key-file", users, "--api-key", "u2"), env) == (
        ["u2", "u1"],
        ["a1"],
    )


def test_the_environment_names_keys_or_key_files(tmp_path: Path) -> None:
    admins = key_file(tmp_path / "admins", "a2\n")
    env = {"MODEL_BOSS_API_KEYS": " e1 , ", "MODEL_BOSS_ADMIN_KEYS_FILE": admins}
    assert service_keys(parse(), env) == (["e1"], ["a2"])
    assert service_keys(parse(), {}) == ([], [])


@pytest.mark.parametrize(
    ("text", "message"), [(None, "cannot read the key file"), ("# none\n\n", "holds no key")]
)
def test_a_missing_or_empty_key_file_is_a_config_error(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "keys"
    if text is not None:
        key_file(path, text)
    with pytest.raises(ConfigError, match=message):
        service_keys(parse("--admin-key-file", str(path)), {})


def test_a_key_file_others_can_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys"
    path.write_text("k\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert read_key_file(path) == ["k"]
    assert "readable by other users" in caplog.text
