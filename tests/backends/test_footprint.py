"""What a process tree uses: PSS summed over the tree (as smaps_rollup says), VRAM from a
faked NVML by pid."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import psutil
import pytest

from model_boss.backends import measure_process_tree

# Allocates (and touches) MB megabytes, starts one child that allocates as much, and waits.
_HOG = """
import subprocess, sys, time
mb = int(sys.argv[1])
hog = b"\\x01" * (mb * 1024 * 1024)
if sys.argv[2] == "parent":
    child = subprocess.Popen([sys.executable, "-c", sys.argv[3], str(mb), "child", ""])
print("ready", flush=True)
time.sleep(120)
"""


class FakeGpus:
    """NVML as a test wants it: MiB per pid on each GPU."""

    def __init__(self, per_gpu: Mapping[int, Mapping[int, int]]) -> None:
        self.per_gpu = per_gpu

    def process_mb(self) -> Mapping[int, Mapping[int, int]]:
        return self.per_gpu


def smaps_pss_mb(pids: list[int]) -> float:
    """Pss of ``pids`` straight from /proc/<pid>/smaps_rollup, in MiB."""
    total_kb = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


@pytest.fixture
def hog_tree() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOG, "60", "parent", _HOG],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    # Wait for the child to hold its memory too.
    for _ in range(200):
        children = psutil.Process(proc.pid).children()
        if children and children[0].memory_info().rss > 60 * 1024 * 1024:
            break
        time.sleep(0.05)
    try:
        yield proc
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_ram_is_the_pss_of_the_whole_tree(hog_tree: subprocess.Popen[str]) -> None:
    root = psutil.Process(hog_tree.pid)
    pids = [root.pid, *(c.pid for c in root.children(recursive=True))]
    assert len(pids) == 2
    measured = measure_process_tree(root.pid, gpu=FakeGpus({})).ram_mb
    expected = smaps_pss_mb(pids)
    assert measured >= 120  # both processes' 60 MB, not the root's alone
    assert abs(measured - expected) <= 0.05 * expected
    rss_mb = sum(psutil.Process(p).memory_info().rss for p in pids) / 2**20
    assert measured < rss_mb  # shared library pages are split, not counted in full


def test_vram_is_what_nvml_reports_for_the_trees_pids_per_gpu(
    hog_tree: subprocess.Popen[str],
) -> None:
    root = psutil.Process(hog_tree.pid)
    (child,) = root.children()
    gpus = FakeGpus({0: {root.pid: 1000, 999_999: 5000}, 1: {child.pid: 300}, 2: {1: 77}})
    footprint = measure_process_tree(root.pid, gpu=gpus)
    assert dict(footprint.vram_mb) == {0: 1000, 1: 300}
    assert footprint.total_vram_mb == 1300


def test_a_process_that_is_gone_uses_nothing() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    footprint = measure_process_tree(proc.pid, gpu=FakeGpus({0: {proc.pid: 100}}))
    assert footprint.ram_mb == 0
    assert footprint.vram_mb == {}


def test_a_broken_nvml_does_not_stop_the_measurement(hog_tree: subprocess.Popen[str]) -> None:
    class Broken:
        def process_mb(self) -> Mapping[int, Mapping[int, int]]:
            raise RuntimeError("GPU fell off the bus")

    footprint = measure_process_tree(hog_tree.pid, gpu=Broken())
    assert footprint.ram_mb >= 120
    assert footprint.vram_mb == {}
