"""Admin logic: model listing, load with live overrides, unload, memory view."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from model_boss.api.errors import APIError
from model_boss.backends import backend_options, backend_table
from model_boss.engine import Engine, RequestRejected
from model_boss.errors import ConfigError

__all__ = ["LIVE_OVERRIDES", "AdminService"]

# Runtime knobs a load may change per backend kind: never a binary, a path or extra args.
# Top-level manifest keys stay top-level; the rest go into the kind's own table.
LIVE_OVERRIDES: dict[str, frozenset[str]] = {
    "llama_server": frozenset(
        {
            "context_size",
            "parallel",
            "image_max_tokens",
            "spec_draft_n_max",
            "spec_draft_n_min",
            "spec_draft_p_min",
        }
    ),
    "vllm_serve": frozenset(
        {
            "context_size",
            "max_model_len",
            "kv_cache_dtype",
            "kv_cache_memory_bytes",
            "gpu_memory_utilization",
            "num_speculative_tokens",
        }
    ),
    "openai_remote": frozenset({"timeout_s", "retries"}),
    "diffusers": frozenset({"num_inference_steps"}),
    "simulated": frozenset({"load_s", "ttft_s", "tokens_per_s", "output_tokens"}),
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
