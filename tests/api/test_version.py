"""The coordinator reports the package version: /health, the OpenAPI document, metrics."""

from __future__ import annotations

import importlib.metadata

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import Server

VERSION = importlib.metadata.version("model-boss")


async def test_health_openapi_and_build_info_carry_the_version(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        health = (await http.get("/health")).json()
        openapi = (await http.get("/openapi.json")).json()
        metrics = (await http.get("/metrics")).text
    assert health["version"] == VERSION
    assert openapi["info"]["version"] == VERSION
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    info = families["model_boss_build_info"]
    assert info.type == "gauge"
    [sample] = info.samples
    assert sample.name == "model_boss_build_info"
    assert sample.labels["version"] == VERSION
    assert sample.value == 1
