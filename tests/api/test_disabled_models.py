"""A disabled model is hidden and refused until an admin loads it; then it is served."""

from __future__ import annotations

import asyncio

import httpx

from model_boss.engine import EngineModel
from model_boss.scheduling import ModelProfile
from tests.api.conftest import Server, make_engine

CHAT = {"model": "off", "messages": [{"role": "user", "content": "hi"}]}


def disabled_model() -> EngineModel:
    return EngineModel(
        profile=ModelProfile("off", 2000, load_s=0.01, enabled=False),
        backend="simulated",
        entry={"simulated": {"load_s": 0.01, "tokens_per_s": 2000.0, "output_tokens": 4}},
        modalities=frozenset({"text"}),
    )


def listed(http_models: httpx.Response) -> list[str]:
    return [m["id"] for m in http_models.json()["data"]]


async def test_a_disabled_model_loaded_by_an_admin_is_served_and_listed_while_loaded() -> None:
    async with Server(make_engine([disabled_model()])) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            assert listed(await http.get("/v1/models")) == []
            assert (await http.get("/v1/models/off")).status_code == 404
            assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 404

            r = await http.post("/v1/admin/models/off/load", json={"wait": True})
            assert r.status_code == 200, r.text
            assert listed(await http.get("/v1/models")) == ["off"]
            assert (await http.get("/v1/models/off")).json()["state"] == "ready"
            r = await http.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"]

            assert (await http.post("/v1/admin/models/off/unload")).status_code == 200
            for _ in range(500):
                if server.engine.model_state("off") == "unloaded":
                    break
                await asyncio.sleep(0.01)
            assert listed(await http.get("/v1/models")) == []
