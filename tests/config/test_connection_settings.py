"""The service table's connection limits (issue 16, finding 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_boss.config import load_settings
from model_boss.errors import ConfigError


def settings_file(tmp_path: Path, service: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(f"[service]\n{service}\n")
    return path


def test_connection_limits_have_defaults_and_can_be_set(tmp_path: Path) -> None:
    default = load_settings(settings_file(tmp_path, "")).service
    assert (default.max_connections, default.backlog) == (1000, 2048)
    assert (default.header_timeout_s, default.keep_alive_s) == (10.0, 5.0)
    given = "max_connections = 50\nbacklog = 4096\nheader_timeout_s = 2\nkeep_alive_s = 3.5"
    service = load_settings(settings_file(tmp_path, given)).service
    assert (service.max_connections, service.backlog) == (50, 4096)
    assert (service.header_timeout_s, service.keep_alive_s) == (2.0, 3.5)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_connections = 0", "service.max_connections: must be an integer from 1"),
        ("backlog = 1.5", "service.backlog: must be an integer"),
        ("header_timeout_s = true", "service.header_timeout_s: must be a number"),
        ("keep_alive_s = 0.5", "service.keep_alive_s: must be a number from 1"),
    ],
)
def test_bad_connection_limits_name_the_file_and_key(
    tmp_path: Path, line: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(settings_file(tmp_path, line))
    assert "settings.toml" in str(caught.value)
