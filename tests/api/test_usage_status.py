"""Leased and used bytes per slot in /v1/pool/status, /v1/admin/models and /metrics."""

from __future__ import annotations

import asyncio
import re
import secrets

import httpx

from model_boss import Device, GPUBoss
from model_boss.engine import Engine, SlotLedger
from model_boss.scheduling import SchedulerConfig
from tests.api.conftest import Server, sim_model

_MIB = 1024 * 1024


def engine() -> Engine:
    # "a" leases 4000 MB and its backend reports 3000 MB used on GPU 0.
    a = sim_model("a", 4000, entry={"simulated": {"load_s": 0.02, "vram_mb": 3000}})
    boss = GPUBoss(f"memory://usage-{secrets.token_hex(4)}", [Device(0, 10_000)], host="t")
    config = SchedulerConfig(batch_window_s=0.0)
    return Engine([a, sim_model("b")], SlotLedger(boss, None), config=config, usage_interval_s=0.05)


async def test_slot_memory_is_shown_in_status_admin_and_metrics() -> None:
    async with Server(engine()) as srv, httpx.AsyncClient(base_url=srv.url) as http:
        r = await http.post("/v1/admin/models/a/load", json={"wait": True})
        assert r.status_code == 200, r.text
        for _ in range(100):
            (slot,) = (await http.get("/v1/pool/status")).json()["slots"]
            if slot["used_bytes"] is not None:
                break
            await asyncio.sleep(0.05)
        assert slot["leased_bytes"] == 4000 * _MIB
        assert slot["used_bytes"] == 3000 * _MIB
        assert slot["memory"] == {
            "t:gpu0": {"leased_bytes": 4000 * _MIB, "used_bytes": 3000 * _MIB}
        }
        assert slot["over_lease"] is None
        models = {m["id"]: m for m in (await http.get("/v1/admin/models")).json()["models"]}
        assert models["a"]["leased_bytes"] == 4000 * _MIB
        assert models["a"]["used_bytes"] == 3000 * _MIB
        assert models["a"]["overuse"] == {"strikes": 0, "last": None, "refused": None}
        assert models["b"]["used_bytes"] is None
        text = (await http.get("/metrics")).text
        labels = re.escape(f'{{model="a",pool="t:gpu0",slot="{slot["slot_id"]}"}}')
        leased = re.search(r"model_boss_slot_leased_bytes" + labels + r" (\S+)", text)
        used = re.search(r"model_boss_slot_used_bytes" + labels + r" (\S+)", text)
        assert leased is not None
        assert used is not None
        assert float(leased.group(1)) == 4000 * _MIB
        assert float(used.group(1)) == 3000 * _MIB
        # Once the slot is gone, so are its series.
        await http.post("/v1/admin/models/a/unload")
        for _ in range(100):
            if not (await http.get("/v1/pool/status")).json()["slots"]:
                break
            await asyncio.sleep(0.05)
        assert "model_boss_slot_leased_bytes{" not in (await http.get("/metrics")).text
