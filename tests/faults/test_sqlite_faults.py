"""The embedded SQLite ledger through its faults: holders killed or stopped, the file
deleted and replaced under live holders, a full and a read-only filesystem."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_boss import Device, GPUBoss
from model_boss.errors import StoreUnavailable
from model_boss.leases._recovery import RECOVERY_S
from tests.faults.audit import Figures, Holders

pytestmark = pytest.mark.slow
TTL_S = 2.0


def _check(figures: Figures, *, served_after: float | None = None) -> None:
    assert figures.over_capacity == 0, figures.line()
    assert figures.token_violations == 0, figures.line()
    assert figures.hung == 0, figures.line()
    assert figures.grants > 0, figures.line()
    if served_after is not None:
        assert figures.grants_after(served_after) > 0, figures.line()


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGSTOP"])
def test_holders_killed_or_stopped(tmp_path: Path, signal_name: str) -> None:
    run = Holders([f"sqlite:///{tmp_path / 'ledger.db'}"], tmp_path, seconds=10, ttl=TTL_S)
    time.sleep(3)
    for i in (0, 1, 2):
        run.kill(i) if signal_name == "SIGKILL" else run.stop(i)
    time.sleep(TTL_S * 1.5)
    if signal_name == "SIGSTOP":
        for i in (0, 1, 2):
            run.cont(i)
    after = time.monotonic()
    hung = run.wait()
    _check(
        run.audit(f"SQLite: {signal_name} of 3 of 8 holders", hung_procs=hung), served_after=after
    )


def test_ledger_file_deleted_then_replaced_under_live_holders(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    run = Holders([f"sqlite:///{path}"], tmp_path, seconds=22, ttl=TTL_S)
    time.sleep(3)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    time.sleep(RECOVERY_S + 2)
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE unrelated (x)")
        db.commit()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.replace(other, path)
    replaced = time.monotonic()
    hung = run.wait()
    figures = run.audit(
        "SQLite: file deleted, then replaced, under 8 live holders", hung_procs=hung
    )
    _check(figures, served_after=replaced + RECOVERY_S)


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


def _integrity(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


async def test_a_read_only_filesystem_is_a_clear_error_and_corrupts_nothing(
    tmp_path: Path,
) -> None:
    with _tmpfs(tmp_path / "fs", "16m") as fs:
        path = fs / "ledger.db"
        url = f"sqlite:///{path}"
        async with GPUBoss(url, [Device(0, 10_000)], host="h", ttl_s=2) as boss:
            async with boss.acquire(vram_mb=4000, timeout=2):
                pass
        _remount(fs, "ro")  # (Linux refuses it while a file is open for writing)
        try:
            with pytest.raises(StoreUnavailable, match=str(path)) as info:
                async with GPUBoss(url, [Device(0, 10_000)], host="h", ttl_s=2) as boss:
                    await boss.acquire(vram_mb=1000, timeout=1)
            print(f"[fault] SQLite on a read-only filesystem: {info.value}")
        finally:
            _remount(fs, "rw")
        assert _integrity(path) == "ok"
        async with GPUBoss(url, [Device(0, 10_000)], host="h", ttl_s=2) as boss:
            async with boss.acquire(vram_mb=1000, timeout=3) as lease:
                assert lease.valid


def _fill(filler: Path) -> None:
    """Write ``filler`` until the disk is full, to the last byte."""
    with contextlib.suppress(OSError), open(filler, "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()


async def test_a_full_disk_is_a_clear_error_and_corrupts_nothing(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "fs", "1m") as fs:
        path = fs / "ledger.db"
        async with GPUBoss(f"sqlite:///{path}", [Device(0, 10**9)], host="h", ttl_s=5) as boss:
            filler = fs / "filler"
            _fill(filler)
            errors: list[str] = []
            held = []
            for _ in range(300):  # grants grow the WAL until the disk refuses
                try:
                    held.append(await boss.acquire(vram_mb=1, timeout=0.5, model_id="x" * 400))
                except StoreUnavailable as exc:
                    errors.append(str(exc))
                    break
            assert errors, "the disk never filled"
            assert str(path) in errors[0]
            print(f"[fault] SQLite on a full disk after {len(held)} grants: {errors[0]}")
            filler.unlink()
            async with boss.acquire(vram_mb=1, timeout=3) as lease:
                assert lease.valid
            for lease in held:
                await lease.release()
        assert _integrity(path) == "ok"
