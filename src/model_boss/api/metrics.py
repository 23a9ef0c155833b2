"""Prometheus metrics of the coordinator (``GET /metrics``), per Prometheus' conventions.

Counters end in ``_total``, sizes are in bytes, durations in seconds; no histogram has a
client label (a series per client and bucket would grow without bound: clients are counted,
not timed). The engine's own counts are read at scrape time by :class:`_EngineCollector`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from model_boss._version import __version__
from model_boss.engine import Engine
from model_boss.priority import Priority

__all__ = ["MIB", "MODEL_STATES", "CoordinatorMetrics"]

MAX_CLIENT_LABELS = 100
MIB = 1024 * 1024
MODEL_STATES = ("ready", "loading", "draining", "failed", "unloaded")
UNLOAD_REASONS = ("room", "preemption", "idle", "admin", "overuse", "other")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def _priority_label(priority: int) -> str:
    try:
        return Priority(priority).label
    except ValueError:
        return str(priority)


class _EngineCollector(Collector):
    """The engine's counts, as counters read when scraped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        counters = self.engine.counters
        unloads = self.engine.unloads
        for name, key, doc in (
            ("model_boss_loads", "loads", "Models loaded"),
            ("model_boss_load_failures", "load_failures", "Loads that failed"),
            ("model_boss_leases_lost", "leases_lost", "Slot leases lost (expired or fenced)"),
            ("model_boss_backend_crashes", "backend_crashes", "Backend processes that died"),
        ):
            yield CounterMetricFamily(name, doc, value=counters.get(key, 0))
        yield CounterMetricFamily(
            "model_boss_preemptions",
            "Slots stopped because a more urgent lease holder asked for their memory",
            value=unloads["preemption"],
        )
        evictions = CounterMetricFamily(
            "model_boss_evictions",
            "Slots stopped, per reason: room (for another model), preemption (for a more "
            "urgent lease holder), idle, admin (an unload), overuse (over its lease), other",
            labels=["reason"],
        )
        for reason in UNLOAD_REASONS:
            evictions.add_metric([reason], unloads[reason])
        yield evictions


class CoordinatorMetrics:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        r.register(_EngineCollector(engine))
        Gauge(
            "model_boss_build_info", "The running model-boss (always 1)", ["version"], registry=r
        ).labels(__version__).set(1)
        self.queue_depth = Gauge(
            "model_boss_queue_depth", "Requests waiting, per priority", ["priority"], registry=r
        )
        self.queue_wait = Histogram(
            "model_boss_queue_wait_seconds",
            "Time from arrival to dispatch, per priority",
            ["priority"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.load_time = Histogram(
            "model_boss_load_duration_seconds",
            "Time from a backend's start to its first ready answer",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.leased = Gauge(
            "model_boss_leased_bytes", "Bytes leased in the ledger, per pool", ["pool"], registry=r
        )
        self.capacity = Gauge(
            "model_boss_pool_capacity_bytes", "Bytes in each pool", ["pool"], registry=r
        )
        self.model_state = Gauge(
            "model_boss_model_state",
            "1 for the state each model is in, 0 for the others",
            ["model", "state"],
            registry=r,
        )
        self.replicas = Gauge(
            "model_boss_model_replicas", "Ready slots (replicas) per model", ["model"], registry=r
        )
        self.slot_leased = Gauge(
            "model_boss_slot_leased_bytes",
            "Bytes a slot's lease holds, per model, slot and pool",
            ["model", "slot", "pool"],
            registry=r,
        )
        self.slot_used = Gauge(
            "model_boss_slot_used_bytes",
            "Bytes a slot's backend was last measured to use (PSS on RAM, NVML on a GPU)",
            ["model", "slot", "pool"],
            registry=r,
        )
        self._slot_labels: set[tuple[str, str, str]] = set()
        self.requests = Counter(
            "model_boss_requests",
            "Requests answered, per model, client and outcome",
            ["model", "client", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "model_boss_request_duration_seconds",
            "Time from a request's arrival to its answer's end, per model",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "model_boss_time_to_first_token_seconds",
            "Time from a streamed request's arrival to its first event, per model",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "model_boss_prompt_tokens", "Prompt tokens, per model", ["model"], registry=r
        )
        self.completion_tokens = Counter(
            "model_boss_completion_tokens", "Completion tokens, per model", ["model"], registry=r
        )
        self._clients: set[str] = set()
        self._loads_seen = 0
        self._depth_labels: set[str] = set()
        # Labelled children, looked up once (labels() takes a lock and builds a key per call).
        self._request_series: dict[tuple[str, str, bool], tuple[Counter, Histogram]] = {}
        self._wait_series: dict[int, Histogram] = {}

    def _client(self, client: str) -> str:
        if client in self._clients or len(self._clients) < MAX_CLIENT_LABELS:
            self._clients.add(client)
            return client
        return "other"

    def observe_request(self, model: str, client: str, seconds: float, ok: bool) -> None:
        label = self._client(client)
        series = self._request_series.get((model, label, ok))
        if series is None:
            series = self._request_series[model, label, ok] = (
                self.requests.labels(model, label, "ok" if ok else "error"),
                self.latency.labels(model),
            )
        series[0].inc()
        series[1].observe(seconds)

    def observe_tokens(self, model: str, prompt: int, completion: int) -> None:
        if prompt > 0:
            self.prompt_tokens.labels(model).inc(prompt)
        if completion > 0:
            self.completion_tokens.labels(model).inc(completion)

    def observe_first_token(self, model: str, seconds: float) -> None:
        self.first_token.labels(model).observe(seconds)

    def observe_dispatch(self, priority: int, wait_s: float) -> None:
        series = self._wait_series.get(priority)
        if series is None:
            series = self._wait_series[priority] = self.queue_wait.labels(_priority_label(priority))
        series.observe(wait_s)

    async def render(self) -> bytes:
        # Every label ever shown goes back to 0 when its class has emptied.
        depth: dict[str, int] = dict.fromkeys(self._depth_labels, 0)
        depth.update({p.label: 0 for p in Priority})
        for item in self.engine.queue_snapshot():
            label = _priority_label(int(item["priority"]))
            depth[label] = depth.get(label, 0) + 1
        for label, n in depth.items():
            self.queue_depth.labels(label).set(n)
        self._depth_labels = set(depth)
        for seconds in self.engine.load_seconds[self._loads_seen :]:
            self.load_time.observe(seconds)
        self._loads_seen = len(self.engine.load_seconds)
        self._render_models()
        self._render_slots()
        for pool in await self.engine.ledger.status():
            self.leased.labels(pool.pool).set(pool.used_mb * MIB)
            self.capacity.labels(pool.pool).set(pool.capacity_mb * MIB)
        return generate_latest(self.registry)

    def _render_models(self) -> None:
        ready: dict[str, int] = {}
        for slot in self.engine.slots_snapshot():
            if slot["state"] == "ready":
                ready[str(slot["model"])] = ready.get(str(slot["model"]), 0) + 1
        for model in self.engine.models:
            current = self.engine.model_state(model)
            for state in MODEL_STATES:
                self.model_state.labels(model, state).set(1 if state == current else 0)
            self.replicas.labels(model).set(ready.get(model, 0))

    def _render_slots(self) -> None:
        """Leased and used bytes of each slot; series of slots that are gone are removed."""
        seen: set[tuple[str, str, str]] = set()
        for slot in self.engine.slots_snapshot():
            for pool, memory in slot["memory"].items():
                labels = (str(slot["model"]), str(slot["slot_id"]), str(pool))
                seen.add(labels)
                self.slot_leased.labels(*labels).set(memory["leased_bytes"])
                if memory["used_bytes"] is not None:
                    self.slot_used.labels(*labels).set(memory["used_bytes"])
        for labels in self._slot_labels - seen:
            for gauge in (self.slot_leased, self.slot_used):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
        self._slot_labels = seen
