"""`/metrics` after loads, evictions, a preemption and streamed requests follows Prometheus'
conventions: counters end in `_total`, sizes are bytes, durations seconds, no client label
on a histogram; and every series an operator needs is there, with the numbers it should have.

With `promtool` on the PATH (Debian's `prometheus` package) its `check metrics` must pass
too; without it, the checks below are the check.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from model_boss import Device, GPUBoss
from model_boss.api.metrics import MIB
from model_boss.engine import Engine, SlotLedger
from model_boss.scheduling import SchedulerConfig
from tests.api.conftest import Server, sim_model

# Unit words Prometheus says not to use: sizes are bytes, durations seconds.
NOT_BASE_UNITS = {"mb", "mib", "kb", "kib", "gb", "gib", "ms", "milliseconds", "minutes", "hours"}

COUNTERS = {
    "model_boss_loads": (),
    "model_boss_load_failures": (),
    "model_boss_evictions": ("reason",),
    "model_boss_preemptions": (),
    "model_boss_leases_lost": (),
    "model_boss_backend_crashes": (),
    "model_boss_prompt_tokens": ("model",),
    "model_boss_completion_tokens": ("model",),
    "model_boss_requests": ("client", "model", "outcome"),
    "process_cpu_seconds": (),
}
HISTOGRAMS = {
    "model_boss_load_duration_seconds": (),
    "model_boss_request_duration_seconds": ("model",),
    "model_boss_time_to_first_token_seconds": ("model",),
    "model_boss_queue_wait_seconds": ("priority",),
}
GAUGES = {
    "model_boss_build_info": ("version",),
    "model_boss_model_state": ("model", "state"),
    "model_boss_model_replicas": ("model",),
    "model_boss_leased_bytes": ("pool",),
    "model_boss_pool_capacity_bytes": ("pool",),
    "model_boss_slot_leased_bytes": ("model", "pool", "slot"),
    "model_boss_queue_depth": ("priority",),
    "process_resident_memory_bytes": (),
}


def violations(text: str) -> list[str]:
    """What in an exposition breaks the naming conventions (empty: nothing)."""
    found: list[str] = []
    for family in text_string_to_metric_families(text):
        name, kind = family.name, family.type
        words = set(name.split("_"))
        if words & NOT_BASE_UNITS:
            found.append(f"{name}: not in base units ({sorted(words & NOT_BASE_UNITS)})")
        if kind == "counter":
            bad = [
                s.name for s in family.samples if s.name not in (f"{name}_total", f"{name}_created")
            ]
            if bad:
                found.append(f"{name}: counter samples not ending in _total: {bad}")
        elif name.endswith("_total"):
            found.append(f"{name}: a {kind} named like a counter")
        if kind == "histogram":
            if name.startswith("model_boss_") and not name.endswith("_seconds"):
                found.append(f"{name}: a histogram of durations not in _seconds")
            if any("client" in s.labels for s in family.samples):
                found.append(f"{name}: a histogram with a client label")
        size = kind == "gauge" and bool(words & {"leased", "capacity", "used", "memory"})
        if size and name.startswith("model_boss_") and not name.endswith("_bytes"):
            found.append(f"{name}: a size not in _bytes")
    return found


def test_the_check_catches_what_it_should() -> None:
    bad = "\n".join(
        [
            "# TYPE model_boss_loads gauge",
            "model_boss_loads 3",
            "# TYPE model_boss_leased_mb gauge",
            'model_boss_leased_mb{pool="p"} 4',
            "# TYPE model_boss_request_seconds histogram",
            'model_boss_request_seconds_bucket{client="c",le="+Inf"} 1',
            'model_boss_request_seconds_count{client="c"} 1',
            'model_boss_request_seconds_sum{client="c"} 1',
            "# TYPE model_boss_load_ms histogram",
            'model_boss_load_ms_bucket{le="+Inf"} 1',
            "model_boss_load_ms_count 1",
            "model_boss_load_ms_sum 1",
            "# TYPE model_boss_queued_total gauge",
            "model_boss_queued_total 1",
            "# TYPE model_boss_pool_capacity gauge",
            "model_boss_pool_capacity 1",
            "",
        ]
    )
    found = "\n".join(violations(bad))
    assert "model_boss_leased_mb: not in base units" in found
    assert "model_boss_request_seconds: a histogram with a client label" in found
    assert "model_boss_load_ms: a histogram of durations not in _seconds" in found
    assert "model_boss_queued_total: a gauge named like a counter" in found
    assert "model_boss_pool_capacity: a size not in _bytes" in found


async def until(check: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.02)):
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


async def scrape_after_a_day_s_work() -> tuple[str, Engine]:
    url = f"memory://metrics-{secrets.token_hex(4)}"
    boss = GPUBoss(url, [Device(0, 10_000)], host="t", ttl_s=0.6)
    models = [sim_model("a"), sim_model("b"), sim_model("c")]
    engine = Engine(models, SlotLedger(boss, None), config=SchedulerConfig(batch_window_s=0.0))
    async with Server(engine) as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        headers = {"X-Client-Id": "tester"}
        for model in ("a", "b"):  # two loads; both fit
            assert (await http.post("/v1/chat/completions", json=chat(model))).status_code == 200
        streamed = chat("a", stream=True, stream_options={"include_usage": True})
        for _ in range(2):  # streamed on a warm model
            async with http.stream(
                "POST", "/v1/chat/completions", json=streamed, headers=headers
            ) as r:
                assert r.status_code == 200
                events = [line async for line in r.aiter_lines() if line.startswith("data: {")]
                assert any("usage" in json.loads(e[6:]) for e in events)
        # c needs the room of a or b: an eviction
        assert (await http.post("/v1/chat/completions", json=chat("c"))).status_code == 200
        assert engine.unloads["room"] == 1
        # another program on the same GPU asks, more urgently, for memory only ours holds
        other = GPUBoss(url, [Device(0, 10_000)], host="t", holder="job")
        lease = await other.acquire(vram_mb=4000, priority="urgent", timeout=5)
        assert await until(lambda: engine.unloads["preemption"] >= 1)
        text = (await http.get("/metrics")).text
        await lease.release()
        await other.close()
    return text, engine


def samples(text: str) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    return sum(
        s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_metrics_follow_the_conventions_after_loads_evictions_preemption_streams() -> None:
    text, engine = await scrape_after_a_day_s_work()
    assert violations(text) == []
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for kind, expected in (("counter", COUNTERS), ("histogram", HISTOGRAMS), ("gauge", GAUGES)):
        for name, labels in expected.items():
            assert name in families, name
            family = families[name]
            assert family.type == kind, (name, family.type)
            shown = {k for s in family.samples for k in s.labels if k != "le"}
            assert shown == set(labels), (name, shown)
    assert "python_gc_objects_collected" in families  # the default collectors, all of them
    assert "python_info" in families

    found = samples(text)
    assert value(found, "model_boss_loads_total") == 3
    assert value(found, "model_boss_evictions_total", reason="room") == 1
    assert value(found, "model_boss_evictions_total", reason="preemption") >= 1
    assert value(found, "model_boss_preemptions_total") >= 1
    assert value(found, "model_boss_load_failures_total") == 0
    assert value(found, "model_boss_load_duration_seconds_count") == 3
    assert value(found, "model_boss_time_to_first_token_seconds_count", model="a") == 2
    assert value(found, "model_boss_time_to_first_token_seconds_count", model="b") == 0
    assert value(found, "model_boss_request_duration_seconds_count", model="a") == 3
    assert value(found, "model_boss_requests_total", model="a", client="tester") == 2
    assert value(found, "model_boss_completion_tokens_total", model="a") == 3 * 8
    assert value(found, "model_boss_prompt_tokens_total", model="a") > 0
    [info] = found["model_boss_build_info"]
    assert info.value == 1
    assert info.labels["version"]
    pool = "t:gpu0"
    assert value(found, "model_boss_pool_capacity_bytes", pool=pool) == 10_000 * MIB
    assert value(found, "model_boss_leased_bytes", pool=pool) % MIB == 0
    for model in ("a", "b", "c"):
        states = {
            s.labels["state"]: s.value
            for s in found["model_boss_model_state"]
            if s.labels["model"] == model
        }
        assert sum(states.values()) == 1
        assert states[engine.model_state(model)] == 1
        ready = value(found, "model_boss_model_replicas", model=model)
        assert ready == (1 if engine.model_state(model) == "ready" else 0)


def test_promtool_check_metrics_passes_where_promtool_is_installed() -> None:
    """Debian's ``prometheus`` package has ``promtool``; where it is missing, the checks of
    the test above (the same rules) are the check."""
    text, _ = asyncio.run(scrape_after_a_day_s_work())
    assert violations(text) == []
    promtool = shutil.which("promtool")
    if promtool is not None:
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_load_failures_backend_crashes_and_lost_leases_are_counted() -> None:
    url = f"memory://metrics-{secrets.token_hex(4)}"
    boss = GPUBoss(url, [Device(0, 10_000)], host="t", ttl_s=0.6)
    broken = sim_model("broken", entry={"simulated": {"fail_start": True}})
    models = [sim_model("a"), sim_model("b"), broken]
    engine = Engine(models, SlotLedger(boss, None), config=SchedulerConfig(batch_window_s=0.0))
    async with Server(engine) as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        assert (await http.post("/v1/chat/completions", json=chat("broken"))).status_code >= 500
        for model in ("a", "b"):
            assert (await http.post("/v1/chat/completions", json=chat(model))).status_code == 200
        slots = {rt.model: rt for rt in engine._slots.values() if rt.backend is not None}
        slots["a"].backend.crash()  # type: ignore[union-attr]
        slots["b"].leases[0].lost.set()  # as if it could not be renewed in time
        assert await until(lambda: engine.model_state("b") != "ready")
        found = samples((await http.get("/metrics")).text)
    assert value(found, "model_boss_load_failures_total") >= 1
    assert value(found, "model_boss_backend_crashes_total") == 1
    assert value(found, "model_boss_leases_lost_total") == 1
