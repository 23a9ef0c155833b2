"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema: no input
schemathesis can generate may make the coordinator answer with a 5xx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from model_boss.api import create_app
from model_boss.testing import free_port
from tests.api.conftest import make_engine, sim_model

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 40
MIN_CASES = 500
generated: list[int] = []


def _app() -> FastAPI:
    models = [sim_model("a"), sim_model("b"), sim_model("vision", modalities=("text", "image"))]
    return create_app(make_engine(models))


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(_app(), host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_a_server_error(case: schemathesis.Case, live_url: str) -> None:  # type: ignore[type-arg]
    response = case.call(base_url=live_url, timeout=30)
    generated.append(response.status_code)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )


def test_zz_enough_cases_were_generated() -> None:
    # Runs after the fuzzing above (pytest keeps file order).
    print(f"schemathesis: {len(generated)} generated cases, statuses {sorted(set(generated))}")
    assert len(generated) >= MIN_CASES, f"only {len(generated)} generated cases"
    assert all(code < 500 for code in generated)
