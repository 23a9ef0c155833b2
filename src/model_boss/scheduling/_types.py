"""Value types shared by the scheduling modules: model profiles, pools, tuning knobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model_boss.config import ModelSpec

__all__ = [
    "DEFAULT_STAY_WARM_S",
    "SPLITTABLE_BACKENDS",
    "ModelProfile",
    "PoolSpec",
    "RequestId",
    "SchedulerConfig",
    "SlotId",
]

SlotId = int
RequestId = str

#: Idle seconds before an unpinned model is unloaded, per category (``x_stay_warm`` overrides).
DEFAULT_STAY_WARM_S: dict[str, float] = {
    "llm": 300.0,
    "embedding": 300.0,
    "diffusion": 900.0,
    "vision": 60.0,
    "audio": 60.0,
}

#: Backends that can split one model over several GPUs (tensor or layer split).
SPLITTABLE_BACKENDS: frozenset[str] = frozenset({"llama_server", "vllm_serve", "simulated"})


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What the scheduler needs to know about one model of the manifest."""

    model_id: str
    vram_mb: int
    category: str = "llm"
    pin: bool = False
    stay_warm_s: float | None = None
    target_inflight: int = 1
    replicas: int = 1
    replica_max: int = 1
    splittable: bool = False
    load_s: float = 10.0
    enabled: bool = True
    pool_kind: str | None = None
    """``ram``: only the host RAM pool (a model run on the CPU on a GPU host); None: the
    scheduler's default pools (its GPUs, or the RAM pool when it has no GPU)."""

    def __post_init__(self) -> None:
        if self.vram_mb < 0:
            raise ValueError(f"{self.model_id}: vram_mb must be >= 0, got {self.vram_mb}")
        if self.target_inflight < 1 or self.replicas < 1 or self.replica_max < self.replicas:
            raise ValueError(
                f"{self.model_id}: need target_inflight >= 1 and 1 <= replicas <= replica_max"
            )

    @classmethod
    def from_spec(cls, spec: ModelSpec, vram_mb: int, *, load_s: float = 10.0) -> ModelProfile:
        """The profile of a manifest entry; ``vram_mb`` from ``config.vram_for`` or measured."""
        return cls(
            model_id=spec.id,
            vram_mb=vram_mb,
            category=spec.category,
            pin=spec.pin,
            stay_warm_s=spec.stay_warm,
            target_inflight=spec.target_inflight,
            replicas=spec.replicas,
            replica_max=spec.replica_max,
            splittable=spec.backend in SPLITTABLE_BACKENDS,
            load_s=load_s,
            enabled=spec.enabled,
            pool_kind=spec.pool_kind,
        )

    @property
    def default_stay_warm_s(self) -> float:
        if self.stay_warm_s is not None:
            return self.stay_warm_s
        return DEFAULT_STAY_WARM_S.get(self.category, 300.0)


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """One memory pool (a GPU, or the host RAM) and how many MB the scheduler may place on it.

    ``kind`` is ``gpu`` or ``ram``: a model goes only to pools of its profile's ``pool_kind``.
    """

    pool_id: str
    capacity_mb: int
    kind: str = "gpu"


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Tuning knobs; the defaults are what the benchmark reports (see DESIGN.md).

    * ``max_queue``: requests waiting (queued or held by a cooldown) before new ones get 429.
    * ``aging_s_per_level``: a request of numeric priority ``p`` is ordered as if it had
      arrived ``(p - 1) * aging_s_per_level`` seconds later, so urgent(1) goes first but a
      batch(50) request that has waited ``49 * aging_s_per_level`` seconds beats new urgent
      work.
    * ``batch_window_s``: a cold model with more queued requests may load before the oldest
      waiting one if its own oldest request sorts within this many seconds of it.
    * ``busy_evict_after_s``: how long (after its aged key) a cold request waits before busy
      slots may be drained to make room for it.
    * ``load_lookahead``: how many cold models one planning round considers.
    * ``demand_window``: eviction ranks models by their arrivals over about this many
      recent requests.
    * ``eviction_priority_exponent``: a victim's keep value is weighted by
      ``(10 / last_priority) ** e``, so slots last used by lower classes go first; 0 ignores
      priority.
    * ``drain_serving_for_cold``: let a cold model take the slot of a model that is serving
      requests but has none queued, waiting for them to finish, when that slot is the
      cheapest to lose. Off by default: it saves loads (2% in the benchmark at light load)
      but costs latency under load. Worth it where loads are far slower than requests.
    * ``retry_after_s``: pause before a model whose lease was denied is tried again; also
      the Retry-After of a 429 (queue full) and of a 503 for ``outside_wait_s``.
    * ``outside_wait_s``: how long a queued request for a model with no slot may wait when
      only what other programs hold now (``PoolOutside``) keeps it from being placed: no
      plan even with every unpinned slot gone, though it fits beside the pinned ones on the
      full capacity. Then it is answered 503 (with Retry-After), its reason naming what the
      pinned models and other programs hold. It counts from the request's arrival or from
      when the model was first seen blocked that way, whichever is later.
    * ``overuse_tolerance`` and ``overuse_tolerance_mb``: a slot measured (``SlotUsage``)
      to use more than its lease on a pool by more than the larger of this fraction of the
      lease and these MB is over its lease; it asks the ledger for the difference.
    * ``overuse_grace_s``: a slot still over its lease this long after the ledger refused
      it more is stopped; its measured peak becomes the model's estimate.
    * ``overuse_strikes``: a model stopped for overuse this many times in a row is refused
      (507, with the numbers) until an ``AdminLoad``, instead of being restarted forever.
    """

    max_queue: int = 10_000
    aging_s_per_level: float = 10.0
    batch_window_s: float = 5.0
    busy_evict_after_s: float = 2.0
    load_lookahead: int = 8
    demand_window: int = 1000
    eviction_priority_exponent: float = 0.5
    drain_serving_for_cold: bool = False
    retry_after_s: float = 5.0
    outside_wait_s: float = 30.0
    overuse_tolerance: float = 0.05
    overuse_tolerance_mb: int = 64
    overuse_grace_s: float = 10.0
    overuse_strikes: int = 2
