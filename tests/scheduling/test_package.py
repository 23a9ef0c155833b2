from __future__ import annotations

import importlib

import pytest

from model_boss.config import ModelSpec
from model_boss.scheduling import ModelProfile


@pytest.mark.parametrize(
    "package", ["model_boss.config", "model_boss.scheduling", "model_boss.sim"]
)
def test_public_api_is_exactly_all(package: str) -> None:
    module = importlib.import_module(package)
    public = {n for n in vars(module) if not n.startswith("_") and n != "annotations"}
    assert sorted(module.__all__) == sorted(public)


def test_profile_from_a_manifest_entry() -> None:
    spec = ModelSpec("v", category="vision", backend="vllm_serve", pin=True, replica_max=3)
    p = ModelProfile.from_spec(spec, 30000, load_s=40.0)
    assert (p.model_id, p.vram_mb, p.pin, p.replica_max, p.load_s) == ("v", 30000, True, 3, 40.0)
    assert p.splittable
    assert p.default_stay_warm_s == 60.0
    art = ModelProfile.from_spec(ModelSpec("a", category="diffusion", backend="diffusers"), 9000)
    assert not art.splittable
    assert art.default_stay_warm_s == 900.0
