"""``model-boss gpu ...`` and ``model-boss ram ...``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from model_boss import Device, GPUBoss, RAMBoss
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


def test_ram_status_and_analyze(ledger: str, capsys: pytest.CaptureFixture[str]) -> None:
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


async def test_ram_clear_asks_the_ram_pools_holders_to_release(
    ledger: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Another program's lease: `ram clear` runs in its own process (here its own loop), so
    # only the ledger can reach the holder; what it frees in itself would free nothing.
    async with RAMBoss(ledger, host="cli") as ram, GPUBoss(ledger, host="cli") as gpu:
        held = await ram.acquire(500, model_id="kit-model", timeout=1)
        on_gpu = await gpu.acquire(vram_mb=1000, gpu=0, timeout=1)
        argv = ["ram", "clear", "--ledger", ledger, "--json"]
        assert await _in_thread(main, argv) == 0
        cleared = json.loads(capsys.readouterr().out)
        assert cleared["asked"] == 1
        assert cleared["pool"] == "cli:ram"
        assert "page_cache" not in cleared
        await held.renew()
        await on_gpu.renew()
        assert held.preempted.is_set()
        assert held.preempt_reason == "ram clear requested from the CLI"
        assert not on_gpu.preempted.is_set()
        await held.release()
        await on_gpu.release()


def test_ram_clear_drops_the_page_cache_only_as_root_and_when_asked(
    ledger: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drop = tmp_path / "drop_caches"
    monkeypatch.setattr("model_boss.cli._ram.DROP_CACHES", drop)
    monkeypatch.setattr("model_boss.cli._ram.os.sync", lambda: None)
    monkeypatch.setattr("model_boss.cli._ram.os.geteuid", lambda: 1000)
    assert main(["ram", "clear", "--drop-page-cache", "--ledger", ledger, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["page_cache"] == "kept: dropping it needs root"
    assert not drop.exists()
    monkeypatch.setattr("model_boss.cli._ram.os.geteuid", lambda: 0)
    assert main(["ram", "clear", "--ledger", ledger, "--json"]) == 0
    capsys.readouterr()
    assert not drop.exists()
    assert main(["ram", "clear", "--drop-page-cache", "--ledger", ledger, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["page_cache"] == "dropped"
    assert drop.read_text() == "1\n"


def test_ram_clear_has_no_in_process_modes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["ram", "clear", "aggressive"])
    assert exited.value.code == 2


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
