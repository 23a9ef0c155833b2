"""Admin logic: model listing, load with live overrides, unload, memory view."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from model_boss.api.errors import APIError
from model_boss.backends import backend_options, backend_table
from model_boss.engine import Engine, RequestRejected
from model_boss.errors import ConfigError

__all__ = ["LIVE_OVERRIDES", "OVERRIDE_RANGES", "AdminService", "OverrideRange"]

# Runtime knobs a load may change per backend kind: never a binary, a path or extra args.
# Top-level manifest keys stay top-level; the rest go into the kind's own table. Each has the
# range it may take (None: a string the backend checks); the capabilities advertise them.


@dataclass(frozen=True, slots=True)
class OverrideRange:
    minimum: float
    maximum: float
    integer: bool = True

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (None: nothing)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "expected an integer" if self.integer else "expected a number"
        if self.integer and not isinstance(value, int):
            return "expected an integer"
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            return f"must be from {self.minimum:g} to {self.maximum:g}"
        return None

    def to_dict(self) -> dict[str, Any]:
        kind = "integer" if self.integer else "number"
        return {"type": kind, "minimum": self.minimum, "maximum": self.maximum}


_CONTEXT = OverrideRange(0, 1_048_576)  # 0: the model's own (llama.cpp)
OVERRIDE_RANGES: dict[str, dict[str, OverrideRange | None]] = {
    "llama_server": {
        "context_size": _CONTEXT,
        "parallel": OverrideRange(1, 256),
        "image_max_tokens": OverrideRange(1, 65_536),
        "spec_draft_n_max": OverrideRange(1, 256),
        "spec_draft_n_min": OverrideRange(0, 256),
        "spec_draft_p_min": OverrideRange(0, 1, integer=False),
    },
    "vllm_serve": {
        "context_size": OverrideRange(1, 1_048_576),
        "max_model_len": OverrideRange(1, 1_048_576),
        "kv_cache_dtype": None,
        "kv_cache_memory_bytes": OverrideRange(1, 2**50),
        "gpu_memory_utilization": OverrideRange(0.01, 1, integer=False),
        "num_speculative_tokens": OverrideRange(1, 64),
    },
    "openai_remote": {
        "timeout_s": OverrideRange(0.1, 3600, integer=False),
        "max_retries": OverrideRange(0, 10),
    },
    "diffusers": {"default_steps": OverrideRange(1, 1000)},
    "simulated": {
        "load_s": OverrideRange(0, 3600, integer=False),
        "ttft_s": OverrideRange(0, 3600, integer=False),
        "tokens_per_s": OverrideRange(0.001, 1_000_000, integer=False),
        "output_tokens": OverrideRange(0, 1_000_000),
    },
}
LIVE_OVERRIDES: dict[str, frozenset[str]] = {
    kind: frozenset(ranges) for kind, ranges in OVERRIDE_RANGES.items()
}
_TOP_LEVEL = frozenset({"context_size"})


class AdminService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def models(self) -> list[dict[str, Any]]:
        queue = self.engine.queue_snapshot()
        running = self.engine.running_snapshot()
        slots = self.engine.slots_snapshot()
        out = []
        for mid, model in self.engine.models.items():
            mine = [s for s in slots if s["model"] == mid]
            p = model.profile
            out.append(
                {
                    "id": mid,
                    "backend": model.backend,
                    "category": p.category,
                    "enabled": p.enabled,
                    "pin": p.pin,
                    "state": self.engine.model_state(mid),
                    "replicas": {
                        "default": p.replicas,
                        "max": p.replica_max,
                        "loaded": sum(1 for s in mine if s["state"] == "ready"),
                        "slots": mine,
                    },
                    "queue": {
                        "waiting": sum(1 for q in queue if q["model"] == mid),
                        "running": sum(1 for r in running if r["model"] == mid),
                    },
                    "footprint_mb": self.engine.scheduler.models[mid].vram_mb,
                    "leased_bytes": sum(s["leased_bytes"] for s in mine),
                    "used_bytes": _sum_known(s["used_bytes"] for s in mine),
                    "overuse": self._overuse(mid),
                    "capabilities": {
                        "modalities": sorted(model.modalities),
                        "live_overrides": sorted(LIVE_OVERRIDES.get(model.backend, ())),
                        "override_ranges": {
                            name: None if rng is None else rng.to_dict()
                            for name, rng in sorted(OVERRIDE_RANGES.get(model.backend, {}).items())
                        },
                    },
                    "overrides": self.engine.overrides(mid),
                }
            )
        return out

    def _overuse(self, model_id: str) -> dict[str, Any]:
        """How the model stands with the usage watch: slots stopped in a row for using more
        than their lease, the last reason, and whether it is refused until a load."""
        m = self.engine.scheduler.models[model_id]
        return {
            "strikes": m.overuse_strikes,
            "last": m.overuse_last or None,
            "refused": m.overuse_refused or None,
        }

    def check_overrides(self, model_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
        """Validate ``overrides`` and return them as a manifest-entry patch."""
        model = self.engine.models[model_id]
        allowed = LIVE_OVERRIDES.get(model.backend, frozenset())
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise APIError(
                400,
                f"not a live override for {model.backend}: {', '.join(unknown)} "
                f"(allowed: {', '.join(sorted(allowed)) or 'none'})",
                code="override_not_allowed",
                param="overrides",
            )
        ranges = OVERRIDE_RANGES.get(model.backend, {})
        for key, value in overrides.items():
            rng = ranges.get(key)
            problem = None if rng is None else rng.problem(value)
            if problem is not None:
                raise APIError(
                    400,
                    f"overrides.{key}: {problem}, got {value!r:.60}",
                    code="invalid_override",
                    param=f"overrides.{key}",
                )
        table_name = backend_table(model.backend)
        table = dict(model.entry.get(table_name) or {})
        patch: dict[str, Any] = {}
        for key, value in overrides.items():
            if key in _TOP_LEVEL:
                patch[key] = value
            else:
                table[key] = value
        if table:
            patch[table_name] = table
        try:
            backend_options(model.backend, model_id, {**model.entry, **patch})
        except ConfigError as exc:
            raise APIError(400, str(exc), code="invalid_override", param="overrides") from None
        return patch

    async def load(
        self,
        model_id: str,
        *,
        replicas: int | None,
        overrides: dict[str, Any] | None,
        wait: bool,
        timeout_s: float,
    ) -> dict[str, Any]:
        if model_id not in self.engine.models:
            raise APIError(404, f"the model {model_id!r} does not exist", code="model_not_found")
        replica_max = self.engine.models[model_id].profile.replica_max
        if replicas is not None and replicas > replica_max:
            raise APIError(
                400,
                f"{model_id!r} allows at most {replica_max} replica(s) (replica_max), "
                f"asked for {replicas}",
                code="too_many_replicas",
                param="replicas",
            )
        patch = self.check_overrides(model_id, overrides or {})
        try:
            await self.engine.load(
                model_id, replicas=replicas, overrides=patch, wait_s=timeout_s if wait else None
            )
        except RequestRejected as exc:
            raise APIError(exc.status, exc.reason, code="load_failed") from None
        return {"id": model_id, "state": self.engine.model_state(model_id)}

    def unload(self, model_id: str) -> dict[str, Any]:
        if model_id not in self.engine.models:
            raise APIError(404, f"the model {model_id!r} does not exist", code="model_not_found")
        self.engine.unload(model_id)
        return {"id": model_id, "state": self.engine.model_state(model_id)}

    async def memory(self) -> dict[str, Any]:
        pools = [p.to_dict() for p in await self.engine.ledger.status()]
        estimates = {mid: m.vram_mb for mid, m in self.engine.scheduler.models.items()}
        return {"pools": pools, "model_estimates_mb": estimates}


def _sum_known(values: Iterable[int | None]) -> int | None:
    """The sum of the measured values; None when none is measured yet."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None
