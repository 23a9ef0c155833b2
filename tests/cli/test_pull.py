from __future__ import annotations

import pytest

from model_boss.backends import models_dir
from model_boss.backends._demo_model import DEMO_MODEL_FILE
from model_boss.cli import main


def test_model_pull_smollm2_puts_the_demo_model_in_the_cache(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["model", "pull", "smollm2"]) == 0  # cached by `make setup`: no download
    out = capsys.readouterr().out
    assert str(models_dir() / DEMO_MODEL_FILE) in out


def test_model_pull_refuses_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["model", "pull", "gpt-5"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
