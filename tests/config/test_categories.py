"""What a model's category implies: vision reads images; audio has no backend yet."""

from __future__ import annotations

import pytest

from model_boss.config import parse_manifest
from model_boss.errors import ConfigError


def test_a_vision_model_takes_images_unless_its_modalities_say_otherwise() -> None:
    models = parse_manifest(
        {
            "see": {"category": "vision", "path": "v.gguf", "vram_mb": 100},
            "text-only": {
                "category": "vision",
                "path": "t.gguf",
                "vram_mb": 100,
                "modalities": ["text"],
            },
            "chat": {"path": "c.gguf", "vram_mb": 100},
        },
        "models.yaml",
    )
    assert models["see"].modalities == ("text", "image")
    assert models["text-only"].modalities == ("text",)
    assert models["chat"].modalities == ("text",)


def test_an_audio_model_is_refused_at_load_naming_the_file_and_key() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_manifest({"ears": {"category": "audio", "path": "w.bin", "vram_mb": 100}}, "m.yaml")
    message = str(refused.value)
    assert "m.yaml" in message
    assert "ears.category" in message
    assert "no backend serves speech yet" in message
