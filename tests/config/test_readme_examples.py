"""Every manifest example in the README loads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from model_boss.config import settings_from_mapping

README = Path(__file__).resolve().parents[2] / "README.md"


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_manifest_examples_load() -> None:
    manifests = [b for b in yaml_blocks() if re.search(r"^(models|service):", b, flags=re.M)]
    assert manifests, "the README shows no manifest"
    for block in manifests:
        settings = settings_from_mapping(yaml.safe_load(block), "README.md")
        # A block that shows only service settings (limits) holds no models.
        assert settings.models or not re.search(r"^models:", block, flags=re.M)
