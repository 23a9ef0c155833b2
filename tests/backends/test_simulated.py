"""The simulated backend: deterministic timings through an injected sleep."""

from __future__ import annotations

import base64
import json

import pytest

from model_boss.backends import (
    BackendCrashed,
    BackendNotRunning,
    BackendStartError,
    BackendState,
    Capability,
    SimulatedBackend,
    SimulatedOptions,
    UnsupportedOperation,
)
from model_boss.backends._simulated import solid_png
from model_boss.errors import ConfigError


class RecordedSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def simulated(sleep: RecordedSleep, **table: object) -> SimulatedBackend:
    options = SimulatedOptions.from_manifest("sim", {"simulated": table})
    return SimulatedBackend("sim", options, sleep=sleep)


async def test_timings_follow_the_options_exactly() -> None:
    sleep = RecordedSleep()
    backend = simulated(sleep, load_s=2.5, ttft_s=0.2, tokens_per_s=10, output_tokens=5)
    await backend.start()
    assert sleep.calls == [2.5]
    assert backend.state is BackendState.READY

    answer = await backend.chat({"messages": [], "max_tokens": 3})
    assert answer["choices"][0]["message"]["content"] == "w0 w1 w2"
    assert answer["usage"]["completion_tokens"] == 3
    assert sleep.calls[1] == pytest.approx(0.2 + 3 / 10)

    sleep.calls.clear()
    events = [event async for event in backend.chat_stream({"messages": []})]
    assert sleep.calls == [0.2, 0.1, 0.1, 0.1, 0.1]
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [json.loads(event[6:]) for event in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "w0 w1 w2 w3 w4"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert backend.requests_served == 2


async def test_completions_embeddings_images_and_footprint() -> None:
    backend = simulated(RecordedSleep(), vram_mb=4000, ram_mb=300, output_tokens=2)
    assert (await backend.footprint()).total_vram_mb == 0  # not loaded yet
    await backend.start()
    assert (await backend.completions({"prompt": "x"}))["choices"][0]["text"] == "w0 w1"
    events = [e async for e in backend.completions_stream({"prompt": "x"})]
    assert json.loads(events[0][6:])["choices"][0]["text"] == "w0"
    first = await backend.embeddings({"input": ["a", "b"]})
    second = await backend.embeddings({"input": ["a", "b"]})
    assert first == second
    assert len(first["data"][0]["embedding"]) == 8
    image = await backend.images({"size": "16x8"})
    assert base64.b64decode(image["data"][0]["b64_json"]) == solid_png(16, 8)
    footprint = await backend.footprint()
    assert footprint.ram_mb == 300
    assert footprint.vram_mb == {0: 4000}


async def test_fail_start_crash_and_capabilities() -> None:
    failing = simulated(RecordedSleep(), fail_start=True)
    with pytest.raises(BackendStartError, match="fail_start"):
        await failing.start()
    assert failing.state is BackendState.FAILED

    crashes: list[BackendCrashed] = []
    options = SimulatedOptions.from_manifest("sim", {"simulated": {"capabilities": ["chat"]}})
    backend = SimulatedBackend("sim", options, on_failure=crashes.append, sleep=RecordedSleep())
    assert backend.capabilities == frozenset({Capability.CHAT})
    await backend.start()
    with pytest.raises(UnsupportedOperation):
        await backend.embeddings({"input": "x"})
    backend.crash("out of memory")
    assert backend.state is BackendState.FAILED
    assert "out of memory" in str(crashes[0])
    with pytest.raises(BackendNotRunning):
        backend.chat_stream({"messages": []})


def test_bad_simulated_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"simulated\.capabilities: unknown capability 'fly'"):
        SimulatedOptions.from_manifest("sim", {"simulated": {"capabilities": ["fly"]}})
    with pytest.raises(ConfigError, match=r"simulated\.tokens_per_s: must be > 0"):
        SimulatedOptions.from_manifest("sim", {"simulated": {"tokens_per_s": 0}})


async def test_create_backend_passes_a_virtual_clock_to_simulated() -> None:
    from model_boss.backends import create_backend

    sleep = RecordedSleep()
    backend = create_backend("simulated", "sim", {"simulated": {"load_s": 30}}, sleep=sleep)
    await backend.start()
    assert sleep.calls == [30]


async def test_a_stream_reports_usage_when_asked() -> None:
    backend = simulated(RecordedSleep(), output_tokens=3)
    await backend.start()
    body = {"messages": [], "stream_options": {"include_usage": True}}
    events = [event async for event in backend.chat_stream(body)]
    usage = json.loads(events[-2][6:])
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 3
    plain = [event async for event in backend.chat_stream({"messages": []})]
    assert "usage" not in json.loads(plain[-2][6:])
