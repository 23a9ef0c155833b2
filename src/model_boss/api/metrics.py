"""Prometheus metrics of the coordinator (``GET /metrics``)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from model_boss.engine import Engine
from model_boss.priority import Priority

__all__ = ["CoordinatorMetrics"]

MAX_CLIENT_LABELS = 100
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def _priority_label(priority: int) -> str:
    try:
        return Priority(priority).label
    except ValueError:
        return str(priority)


class CoordinatorMetrics:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.registry = CollectorRegistry()
        r = self.registry
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
        self.loads = Gauge("model_boss_loads", "Models loaded since start", registry=r)
        self.load_failures = Gauge("model_boss_load_failures", "Failed loads", registry=r)
        self.evictions = Gauge("model_boss_evictions", "Models evicted since start", registry=r)
        self.load_time = Histogram(
            "model_boss_load_seconds", "Time to load a model", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.leased = Gauge(
            "model_boss_leased_mb", "MiB leased in the ledger, per pool", ["pool"], registry=r
        )
        self.capacity = Gauge(
            "model_boss_pool_capacity_mb", "MiB in each pool", ["pool"], registry=r
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
            "model_boss_request_seconds",
            "Request latency, per model and client",
            ["model", "client"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
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
                self.latency.labels(model, label),
            )
        series[0].inc()
        series[1].observe(seconds)

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
        counters = self.engine.counters
        self.loads.set(counters["loads"])
        self.load_failures.set(counters["load_failures"])
        self.evictions.set(counters["evictions"])
        for seconds in self.engine.load_seconds[self._loads_seen :]:
            self.load_time.observe(seconds)
        self._loads_seen = len(self.engine.load_seconds)
        self._render_slots()
        for pool in await self.engine.ledger.status():
            self.leased.labels(pool.pool).set(pool.used_mb)
            self.capacity.labels(pool.pool).set(pool.capacity_mb)
        return generate_latest(self.registry)

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
