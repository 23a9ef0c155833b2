"""One version, read from the package metadata, everywhere; a LICENSE that matches pyproject."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import httpx

import model_boss
from model_boss.client import SyncInferenceClient

ROOT = Path(__file__).resolve().parents[1]
VERSION = importlib.metadata.version("model-boss")


def test_the_version_is_the_distribution_s() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert model_boss.__version__ == VERSION == project["version"]


def test_the_license_file_is_the_apache_2_text_pyproject_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "9. Accepting Warranty or Additional Liability." in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_sdk_says_its_version_in_the_user_agent() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["user-agent"])
        return httpx.Response(200, json={"status": "ok"})

    with SyncInferenceClient("http://coordinator", transport=httpx.MockTransport(answer)) as c:
        c.health()
    assert seen == [f"model-boss-client/{VERSION}"]
