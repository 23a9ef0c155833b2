"""Every live override the admin API (and so the dashboard's form) offers is one its
backend accepts: no name on the allow-list is refused by the backend at every load."""

from __future__ import annotations

from typing import Any

import pytest

from model_boss.api.admin import OVERRIDE_RANGES, AdminService
from tests.api.conftest import make_engine, sim_model

# A minimal valid entry for each backend kind that has live overrides.
ENTRIES: dict[str, dict[str, Any]] = {
    "llama_server": {"path": "/models/m.gguf"},
    "vllm_serve": {"path": "org/m"},
    "openai_remote": {"openai_remote": {"base_url": "http://127.0.0.1:9/v1"}},
    "diffusers": {"path": "/models/pipe"},
    "simulated": {"simulated": {}},
}
SAMPLES: dict[str, Any] = {"kv_cache_dtype": "fp8"}


def cases() -> list[tuple[str, str, Any]]:
    out = []
    for kind, ranges in OVERRIDE_RANGES.items():
        for name, rng in ranges.items():
            value = SAMPLES.get(name, rng.maximum if rng is not None else None)
            out.append((kind, name, value))
    return out


def test_every_backend_kind_with_overrides_is_covered() -> None:
    assert set(OVERRIDE_RANGES) == set(ENTRIES)


@pytest.mark.parametrize(("kind", "name", "value"), cases(), ids=lambda v: str(v))
def test_each_offered_override_is_accepted_by_its_backend(kind: str, name: str, value: Any) -> None:
    engine = make_engine([sim_model("m", backend=kind, entry=ENTRIES[kind])])
    patch = AdminService(engine).check_overrides("m", {name: value})
    assert name in patch or name in next(iter(patch.values()))


def test_the_names_backends_reject_are_not_offered() -> None:
    assert "retries" not in OVERRIDE_RANGES["openai_remote"]
    assert "num_inference_steps" not in OVERRIDE_RANGES["diffusers"]


def test_the_dashboards_form_lists_exactly_the_checked_names() -> None:
    # The dashboard builds its overrides form from capabilities.live_overrides.
    models = [sim_model(kind, backend=kind, entry=entry) for kind, entry in ENTRIES.items()]
    for card in AdminService(make_engine(models)).models():
        offered = set(card["capabilities"]["live_overrides"])
        assert offered == set(OVERRIDE_RANGES[card["backend"]])
