"""The process supervisor against real child processes (small Python scripts)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from model_boss.backends import (
    BackendCrashed,
    BackendStartError,
    BackendStartTimeout,
    ProcessSpec,
    SupervisedProcess,
)
from tests.backends.conftest import process_gone, wait_gone

READY_FILE_CHILD = """
import pathlib, sys, time
print("hello from the child", flush=True)
pathlib.Path(sys.argv[1]).write_text("ready")
while True:
    time.sleep(1)
"""


def python_spec(code: str, *args: str, tmp_path: Path, **kwargs: object) -> ProcessSpec:
    return ProcessSpec(
        argv=(sys.executable, "-c", textwrap.dedent(code), *args),
        name="child",
        log_path=tmp_path / "child.log",
        **kwargs,  # type: ignore[arg-type]
    )


def marker_probe(path: Path) -> object:
    async def probe() -> bool:
        return path.exists()  # noqa: ASYNC240 - a stat of a local file

    return probe


async def start_ready(spec: ProcessSpec, marker: Path, **kwargs: object) -> SupervisedProcess:
    process = SupervisedProcess(spec, **kwargs)  # type: ignore[arg-type]
    await process.spawn()
    await process.wait_ready(marker_probe(marker), timeout_s=20)  # type: ignore[arg-type]
    return process


async def test_ready_then_stop_keeps_output_and_leaves_no_process(tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    spec = python_spec(READY_FILE_CHILD, str(marker), tmp_path=tmp_path)
    process = await start_ready(spec, marker)
    pid = process.pid
    assert pid is not None
    assert process.running

    returncode = await process.stop(grace_s=5)

    assert returncode == -signal.SIGTERM
    assert process_gone(pid)
    assert "hello from the child" in process.recent_lines()
    assert "hello from the child" in (tmp_path / "child.log").read_text()


async def test_sigkill_is_reported_at_once_with_the_last_lines(tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    reported = asyncio.Event()
    errors: list[BackendCrashed] = []

    def on_exit(error: BackendCrashed) -> None:
        errors.append(error)
        reported.set()

    spec = python_spec(READY_FILE_CHILD, str(marker), tmp_path=tmp_path)
    process = await start_ready(spec, marker, on_unexpected_exit=on_exit)
    assert process.pid is not None

    killed_at = time.monotonic()
    os.kill(process.pid, signal.SIGKILL)
    await asyncio.wait_for(reported.wait(), timeout=1.0)

    assert time.monotonic() - killed_at < 1.0
    assert errors[0].returncode == -signal.SIGKILL
    assert "killed by SIGKILL" in str(errors[0])
    assert "hello from the child" in errors[0].log_tail
    assert "hello from the child" in str(errors[0])
    await process.stop()
    assert len(errors) == 1


async def test_exit_during_start_up_fails_fast_with_its_own_output(tmp_path: Path) -> None:
    code = "import sys; print('fatal: cannot open model.gguf', file=sys.stderr); sys.exit(3)"
    process = SupervisedProcess(python_spec(code, tmp_path=tmp_path))
    await process.spawn()
    started = time.monotonic()

    with pytest.raises(BackendStartError) as caught:
        await process.wait_ready(marker_probe(tmp_path / "never"), timeout_s=30)  # type: ignore[arg-type]

    assert time.monotonic() - started < 5
    assert not isinstance(caught.value, BackendStartTimeout)
    assert "exit code 3" in str(caught.value)
    assert "fatal: cannot open model.gguf" in caught.value.log_tail


async def test_never_ready_is_stopped_after_the_timeout_and_leaves_no_process(
    tmp_path: Path,
) -> None:
    code = "import time; print('loading...', flush=True); time.sleep(600)"
    process = SupervisedProcess(python_spec(code, tmp_path=tmp_path))
    await process.spawn()
    pid = process.pid
    assert pid is not None

    with pytest.raises(BackendStartTimeout) as caught:
        await process.wait_ready(marker_probe(tmp_path / "never"), timeout_s=0.5)  # type: ignore[arg-type]

    assert "not ready after 0.5 s" in str(caught.value)
    assert "loading..." in caught.value.log_tail
    assert process_gone(pid)
    assert not process.running


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path,
) -> None:
    code = """
    import pathlib, signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pathlib.Path(sys.argv[1]).write_text("ready")
    while True:
        time.sleep(1)
    """
    marker = tmp_path / "ready"
    process = await start_ready(python_spec(code, str(marker), tmp_path=tmp_path), marker)
    started = time.monotonic()

    returncode = await process.stop(grace_s=0.3)

    assert returncode == -signal.SIGKILL
    assert 0.3 <= time.monotonic() - started < 3


async def test_stop_takes_down_the_whole_process_group(tmp_path: Path) -> None:
    code = """
    import pathlib, subprocess, sys, time
    grandchild = subprocess.Popen(["sleep", "600"])
    pathlib.Path(sys.argv[1]).write_text(str(grandchild.pid))
    while True:
        time.sleep(1)
    """
    marker = tmp_path / "ready"
    process = await start_ready(python_spec(code, str(marker), tmp_path=tmp_path), marker)
    grandchild = int(marker.read_text())
    assert not process_gone(grandchild)

    await process.stop(grace_s=5)

    await wait_gone(grandchild, timeout_s=2)


async def test_stop_finishes_when_the_exit_watcher_was_cancelled(tmp_path: Path) -> None:
    # An event loop shutting down cancels every task, the exit watcher too, before a stop()
    # in a ``finally`` runs: stop must still see the process go (it used to wait forever).
    marker = tmp_path / "ready"
    process = await start_ready(
        python_spec(READY_FILE_CHILD, str(marker), tmp_path=tmp_path), marker
    )
    pid = process.pid
    assert pid is not None
    for task in asyncio.all_tasks():
        if task.get_name() == "child exit":
            task.cancel()
    await asyncio.sleep(0)

    await asyncio.wait_for(process.stop(grace_s=1), timeout=5)

    assert process_gone(pid)
    assert not process.running


async def test_environment_gpus_library_path_and_extra_env(tmp_path: Path) -> None:
    code = """
    import json, os, pathlib, sys
    keys = ["CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "LD_LIBRARY_PATH", "MB_EXTRA"]
    pathlib.Path(sys.argv[1]).write_text(json.dumps({k: os.environ.get(k) for k in keys}))
    """
    marker = tmp_path / "env.json"
    spec = python_spec(
        code,
        str(marker),
        tmp_path=tmp_path,
        env={"MB_EXTRA": "yes", "LD_LIBRARY_PATH": "/base/lib"},
        library_path=("/opt/a/lib", "/opt/b/lib"),
        gpus=(2, 3),
    )
    process = SupervisedProcess(spec)
    await process.spawn()
    assert await process.wait_exit() == 0

    env = json.loads(marker.read_text())
    assert env == {
        "CUDA_VISIBLE_DEVICES": "2,3",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # NVML's indices are in PCI bus order
        "LD_LIBRARY_PATH": "/opt/a/lib:/opt/b/lib:/base/lib",
        "MB_EXTRA": "yes",
    }


def test_an_empty_gpu_list_hides_every_gpu_and_none_inherits() -> None:
    base = {"CUDA_VISIBLE_DEVICES": "0"}
    assert ProcessSpec(argv=("x",), name="x", gpus=()).child_env(base)["CUDA_VISIBLE_DEVICES"] == ""
    assert ProcessSpec(argv=("x",), name="x").child_env(base)["CUDA_VISIBLE_DEVICES"] == "0"


def test_a_child_gets_the_allowed_variables_and_the_manifests_never_the_keys() -> None:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LC_ALL": "C.UTF-8",
        "HF_HOME": "/cache/hf",
        "CUDA_CACHE_PATH": "/cache/cuda",
        "MODEL_BOSS_API_KEYS": "user-key",
        "MODEL_BOSS_ADMIN_KEYS_FILE": "/etc/keys",
        "OPENAI_API_KEY": "sk-1",
        "AWS_SECRET_ACCESS_KEY": "s",
        "RANDOM_THING": "x",
    }
    spec = ProcessSpec(argv=("x",), name="x", env={"RANDOM_THING": "chosen", "MY_FLAG": "1"})
    assert spec.child_env(base) == {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LC_ALL": "C.UTF-8",
        "HF_HOME": "/cache/hf",
        "CUDA_CACHE_PATH": "/cache/cuda",
        "RANDOM_THING": "chosen",  # the manifest names what it wants passed
        "MY_FLAG": "1",
    }


async def test_very_long_output_lines_are_kept(tmp_path: Path) -> None:
    code = "print('x' * 200_000); print('after', flush=True)"
    process = SupervisedProcess(python_spec(code, tmp_path=tmp_path))
    await process.spawn()
    await process.wait_exit()
    await process.stop()

    lines = process.recent_lines()
    assert lines[-1] == "after"
    assert len(lines[-2]) == 200_000


async def test_a_missing_executable_is_a_start_error(tmp_path: Path) -> None:
    process = SupervisedProcess(ProcessSpec(argv=(str(tmp_path / "nope"),), name="nope"))
    with pytest.raises(BackendStartError, match="cannot run nope"):
        await process.spawn()


COORDINATOR = """
import asyncio, sys
from model_boss.backends import ProcessSpec, SupervisedProcess

async def main():
    child = SupervisedProcess(ProcessSpec(argv=("sleep", "600"), name="sleep"))
    await child.spawn()
    print(child.pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_the_child_dies_when_the_coordinator_is_killed(tmp_path: Path) -> None:
    coordinator = await asyncio.create_subprocess_exec(
        sys.executable, "-c", COORDINATOR, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert coordinator.stdout is not None
        child = int(await asyncio.wait_for(coordinator.stdout.readline(), 30))
        assert not process_gone(child)

        coordinator.send_signal(signal.SIGKILL)

        assert await wait_gone(child, timeout_s=2) < 2
    finally:
        if coordinator.returncode is None:
            coordinator.kill()
        await coordinator.wait()


async def test_stopping_during_start_up_ends_the_wait_and_the_process(tmp_path: Path) -> None:
    code = "import time; print('loading...', flush=True); time.sleep(600)"
    process = SupervisedProcess(python_spec(code, tmp_path=tmp_path))
    await process.spawn()
    waiting = asyncio.create_task(
        process.wait_ready(marker_probe(tmp_path / "never"), timeout_s=60)  # type: ignore[arg-type]
    )
    await process.stop(grace_s=5)
    with pytest.raises(BackendStartError, match="was stopped during start-up"):
        await asyncio.wait_for(waiting, timeout=5)
    assert process.pid is not None
    assert process_gone(process.pid)
    assert (tmp_path / "child.log").read_text().startswith("=== ")
