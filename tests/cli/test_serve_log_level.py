"""`model-boss serve --log-level`: an unknown level is a usage error, not a traceback."""

from __future__ import annotations

import pytest

from model_boss.cli import main


def test_an_unknown_log_level_is_a_usage_error_naming_the_valid_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--log-level", "verbose"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--log-level" in err
    for level in ("debug", "info", "warning", "error", "critical"):
        assert level in err


def test_a_log_level_in_any_case_is_accepted() -> None:
    from model_boss.cli import _parser

    args = _parser().parse_args(["serve", "--log-level", "WARNING"])
    assert args.log_level == "warning"
