"""`model-boss --version` and the exit codes: 0 done, 1 a runtime error, 2 a usage error."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import model_boss
from model_boss.cli import main
from model_boss.testing import free_port

VERSION = importlib.metadata.version("model-boss")


def test_version_is_the_package_metadata_s(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"model-boss {VERSION}"
    assert model_boss.__version__ == VERSION


def test_console_script_prints_the_version() -> None:
    exe = Path(sys.executable).with_name("model-boss")
    done = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, f"model-boss {VERSION}")


def test_unknown_command_and_bad_flag_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["no-such-command"], ["model", "list", "--no-such-flag"], []):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2, argv
    assert "usage:" in capsys.readouterr().err


def test_a_flag_value_refused_after_parsing_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["gpu", "status", "--ledger", "ftp://nowhere"]) == 2
    assert "unknown ledger URL" in capsys.readouterr().err


def test_serve_limit_below_its_floor_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--ledger", "memory://exit-codes", "--max-queue", "-1"]) == 2
    assert "--max-queue must be at least 0" in capsys.readouterr().err


def test_a_coordinator_that_is_not_there_is_a_runtime_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["model", "list", "--url", url]) == 1
    assert "CoordinatorUnavailable" in capsys.readouterr().err


def test_a_runtime_error_of_the_console_script_exits_1() -> None:
    exe = Path(sys.executable).with_name("model-boss")
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [str(exe), "queue", "status", "--url", url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "CoordinatorUnavailable" in done.stderr
