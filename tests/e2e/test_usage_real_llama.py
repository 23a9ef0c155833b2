"""The real llama-server with SmolLM2 on the RAM pool: what the coordinator reports a slot
uses agrees with /proc/<pid>/smaps_rollup, and the command line carries --ctx-size."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
import psutil
import pytest

from model_boss import RAMBoss
from model_boss.engine import Engine, EngineModel, SlotLedger
from model_boss.scheduling import ModelProfile, SchedulerConfig
from tests.api.conftest import Server

pytestmark = pytest.mark.slow

_MIB = 1024 * 1024


def smaps_pss_bytes(root: int) -> int:
    """Pss of ``root`` and its descendants, read straight from smaps_rollup."""
    pids = [root, *(c.pid for c in psutil.Process(root).children(recursive=True))]
    total_kb = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total_kb += int(line.split()[1])
    return total_kb * 1024


def command_line(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")


async def test_used_memory_of_a_real_llama_server_matches_smaps_pss(
    demo_model: Path, llama_server_binary: Path
) -> None:
    # No context_size in the entry: the backend passes the one the estimate assumed.
    entry = {
        "path": str(demo_model),
        "llama_server": {"binary": str(llama_server_binary), "threads": 2, "parallel": 1},
    }
    smol = EngineModel(ModelProfile("smol", 1500, load_s=1.0), "llama_server", entry)
    ram = RAMBoss(f"memory://usage-{secrets.token_hex(4)}", total_mb=4000, host="t")
    engine = Engine(
        [smol],
        SlotLedger(None, ram),
        config=SchedulerConfig(batch_window_s=0.0),
        usage_interval_s=0.5,
    )
    async with Server(engine) as srv, httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        r = await http.post("/v1/admin/models/smol/load", json={"wait": True})
        assert r.status_code == 200, r.text
        body = {
            "model": "smol",
            "messages": [{"role": "user", "content": "Name three colours."}],
            "max_tokens": 24,
        }
        r = await http.post("/v1/chat/completions", json=body)  # touches the KV cache
        assert r.status_code == 200, r.text
        (slot,) = (await http.get("/v1/pool/status")).json()["slots"]
        pid = slot["backend"]["pid"]
        cmdline = command_line(pid)
        assert b"--ctx-size" in cmdline
        ctx = int(cmdline[cmdline.index(b"--ctx-size") + 1])
        # Compare a fresh measurement of the watch with smaps_rollup read right after it.
        before = slot["used_bytes"]
        for _ in range(100):
            await asyncio.sleep(0.1)
            (slot,) = (await http.get("/v1/pool/status")).json()["slots"]
            if slot["used_bytes"] is not None and slot["used_bytes"] != before:
                break
        reported = slot["used_bytes"]
        pss = smaps_pss_bytes(pid)
        print(
            f"llama-server pid {pid} --ctx-size {ctx}: coordinator reports "
            f"{reported / _MIB:.1f} MiB used, smaps_rollup Pss {pss / _MIB:.1f} MiB, "
            f"RSS {psutil.Process(pid).memory_info().rss / _MIB:.1f} MiB; "
            f"leased {slot['leased_bytes'] / _MIB:.0f} MiB"
        )
        assert reported is not None
        assert abs(reported - pss) <= 0.15 * pss
        assert slot["memory"] == {
            "t:ram": {"leased_bytes": slot["leased_bytes"], "used_bytes": reported}
        }
