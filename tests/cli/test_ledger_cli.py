"""``model-boss gpu ...`` and ``model-boss ram ...``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from model_boss import Device, GPUBoss
from model_boss.cli import main
from model_boss.leases import LeaseRequest


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MODEL_BOSS_DEVICES", "24000,16000")
    monkeypatch.setenv("MODEL_BOSS_HOST", "cli")
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(list(argv)) == 0
    data: dict[str, object] = json.loads(capsys.readouterr().out)
    return data


async def test_gpu_status_lists_pools_and_live_leases(
    ledger: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with GPUBoss(ledger, [Device(0, 24000), Device(1, 16000)], host="cli") as boss:
        lease = await boss.acquire(vram_mb=5000, gpu=1, model_id="llama", timeout=1)
        argv = ["gpu", "status", "--ledger", ledger, "--json"]
        assert await _in_thread(main, argv) == 0
        pools = json.loads(capsys.readouterr().out)["pools"]
        assert isinstance(pools, list)
        assert [(p["pool"], p["capacity_mb"], p["used_mb"]) for p in pools] == [
            ("cli:gpu0", 24000, 0),
            ("cli:gpu1", 16000, 5000),
        ]
        assert pools[1]["leases"][0]["model_id"] == "llama"
        assert await _in_thread(main, ["gpu", "status", "--ledger", ledger]) == 0
        table = capsys.readouterr().out
        assert "cli:gpu1" in table
        assert "llama" in table
        await lease.release()


async def _in_thread(fn: Callable[[list[str]], int], argv: list[str]) -> int:
    # The CLI runs its own event loop, so it cannot run on the test's.
    return await asyncio.to_thread(fn, argv)


async def test_gpu_drain_asks_holders_to_release(
    ledger: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with GPUBoss(ledger, [Device(0, 24000), Device(1, 16000)], host="cli") as boss:
        a = await boss.acquire(vram_mb=1000, gpu=0, timeout=1)
        b = await boss.acquire(vram_mb=1000, gpu=1, timeout=1)
        argv = ["gpu", "drain", "--gpu", "1", "--ledger", ledger, "--json"]
        assert await _in_thread(main, argv) == 0
        assert json.loads(capsys.readouterr().out) == {"asked": 1, "pool": "cli:gpu1"}
        await a.renew()
        await b.renew()
        assert not a.preempted.is_set()
        assert b.preempted.is_set()
        assert b.preempt_reason == "drain requested from the CLI"
        await a.release()
        await b.release()


async def test_gpu_cleanup_removes_leases_of_dead_processes(
    ledger: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with GPUBoss(ledger, [Device(0, 24000), Device(1, 16000)], host="cli") as boss:
        ghost = LeaseRequest("cli:gpu0", "ghost", 300, 10, "gone", 2**22 + 4321, "cli", None, 60)
        assert (await boss.store.grant(ghost)).lease is not None
    assert await _in_thread(main, ["gpu", "cleanup", "--ledger", ledger, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": 1}


def test_ram_status_analyze_and_clear(ledger: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_json(capsys, "ram", "status", "--ledger", ledger, "--json")
    pools = status["pools"]
    assert isinstance(pools, list)
    assert pools[0]["pool"] == "cli:ram"
    assert pools[0]["capacity_mb"] > 0
    analysis = run_json(capsys, "ram", "analyze", "--json")
    assert analysis["pressure"] in {"low", "medium", "high", "critical"}
    memory = analysis["memory"]
    assert isinstance(memory, dict)
    assert memory["total_mb"] > 0
    cleared = run_json(capsys, "ram", "clear", "conservative", "--json")
    assert cleared["mode"] == "conservative"
    actions = cleared["actions"]
    assert isinstance(actions, list)
    assert actions[0].startswith("gc.collect")


def test_aggressive_clear_keeps_the_page_cache_unless_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cleared = run_json(capsys, "ram", "clear", "aggressive", "--json")
    actions = cleared["actions"]
    assert isinstance(actions, list)
    assert any("page cache kept" in a for a in actions)


def test_bad_ledger_url_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpu", "status", "--ledger", "ftp://nowhere"]) == 2
    assert "unknown ledger URL" in capsys.readouterr().err


def test_console_script_runs(ledger: str) -> None:
    exe = Path(sys.executable).with_name("model-boss")
    out = subprocess.run(
        [str(exe), "gpu", "status", "--ledger", ledger],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "cli:gpu0" in out
    assert "24000" in out
