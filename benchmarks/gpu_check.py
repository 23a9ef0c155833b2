"""GPU acceptance check: do the engines model-boss starts stay inside their leases?

Run: ``.venv/bin/python benchmarks/gpu_check.py`` (one command, no network). On a machine
with an NVIDIA GPU it finds (or builds, with CUDA) a llama-server, serves three copies of
the demo GGUF with different context sizes through ``model-boss serve`` on a SQLite
ledger, runs one construction-kit program on the same ledger that holds most of the GPU
(so the coordinator must swap models in the room left), drives concurrent requests, and
samples NVML every 0.25 s: memory used per process against the lease that covers it.
It prints one JSON line: the largest excess of any process over its lease, instants of
over-commit (NVML's used memory of leased processes above the device total, or a process
over its lease for longer than the grace period), load times, and tokens/s through the
coordinator against straight to llama-server. ``--logs DIR`` keeps the coordinator's and
the backends' logs.

Without a GPU it says so, and runs the same flow on the RAM pool (memory measured as PSS
from /proc; the kit program leases all of the pool but the room, and touches 192 MB of
it), exiting 0 when nothing was over-committed: that checks everything but CUDA.

Options: ``--seconds`` of mixed traffic (default 60 on a GPU, 15 without), ``--room-mb``
left to the coordinator on the GPU (default 3000), ``--grace-s`` (default 15: the
coordinator's usage watch samples every 2 s, waits 10 s after a refused grow, and a stop
takes a few seconds), ``--llama-server PATH``, ``--model PATH``, ``--out FILE``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
#: (model id, context size): copies of the demo model whose KV caches differ.
MODELS = (("smol-2k", 2048), ("smol-8k", 8192), ("smol-32k", 32768))

UsageSource = Callable[[], dict[int, int]]
"""Memory used right now per pid (MiB) on the pool being checked."""


# -- measuring -------------------------------------------------------------------------------


def nvml_usage(nvml: Any, index: int) -> tuple[UsageSource, int]:
    """Per-pid MiB used on GPU ``index`` (compute and graphics processes), and its total."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    total = int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // MB

    def usage() -> dict[int, int]:
        used: dict[int, int] = {}
        for getter in (
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses",
        ):
            with contextlib.suppress(Exception):
                for proc in getattr(nvml, getter)(handle):
                    used[int(proc.pid)] = (
                        used.get(int(proc.pid), 0) + int(proc.usedGpuMemory or 0) // MB
                    )
        return used

    return usage, total


def pss_usage(pids: Callable[[], Sequence[int]]) -> UsageSource:
    """Per-pid PSS (MiB) of the processes ``pids()`` names, children included."""

    def usage() -> dict[int, int]:
        out: dict[int, int] = {}
        for pid in pids():
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                pss = 0
                for proc in (root, *root.children(recursive=True)):
                    with contextlib.suppress(psutil.Error):
                        pss += int(getattr(proc.memory_full_info(), "pss", 0))
                out[pid] = pss // MB
        return out

    return usage


@dataclass
class Sample:
    t: float
    used: dict[int, int]  # pid -> MiB used
    leased: dict[int, int]  # pid -> MiB its leases hold
    names: dict[int, str]  # pid -> who (model id or kit holder)


@dataclass
class Audit:
    """What the samples show (all MiB)."""

    samples: int = 0
    max_excess_mb: int = 0
    max_excess_by: str = ""
    over_lease_past_grace: int = 0  # samples where some process was over for > grace
    overcommit_instants: int = 0  # samples where leased processes used more than the device
    max_used_total_mb: int = 0
    max_leased_total_mb: int = 0
    max_unleased_mb: int = 0  # memory of processes that held no lease at that instant
    per_process: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "max_excess_mb": self.max_excess_mb,
            "max_excess_by": self.max_excess_by,
            "over_lease_past_grace": self.over_lease_past_grace,
            "overcommit_instants": self.overcommit_instants,
            "max_used_total_mb": self.max_used_total_mb,
            "max_leased_total_mb": self.max_leased_total_mb,
            "max_unleased_mb": self.max_unleased_mb,
            "per_process": self.per_process,
        }


def audit(
    samples: Sequence[Sample], device_total_mb: int, grace_s: float, tolerance_mb: int = 64
) -> Audit:
    """Used against leased per process over time. A process is over its lease when it uses
    more than lease + ``tolerance_mb``; that counts against the engines only once it has
    lasted ``grace_s`` (the coordinator's usage watch has that long to grow or stop it)."""
    out = Audit(samples=len(samples))
    over_since: dict[int, float] = {}
    for s in samples:
        covered = {pid: mb for pid, mb in s.used.items() if pid in s.leased}
        unleased = sum(mb for pid, mb in s.used.items() if pid not in s.leased)
        out.max_unleased_mb = max(out.max_unleased_mb, unleased)
        used_total = sum(covered.values())
        out.max_used_total_mb = max(out.max_used_total_mb, used_total)
        out.max_leased_total_mb = max(out.max_leased_total_mb, sum(s.leased.values()))
        if used_total > device_total_mb:
            out.overcommit_instants += 1
        past_grace = False
        for pid, used in covered.items():
            name = s.names.get(pid, str(pid))
            excess = used - s.leased[pid]
            row = out.per_process.setdefault(name, {"max_used_mb": 0, "max_excess_mb": 0})
            row["max_used_mb"] = max(row["max_used_mb"], used)
            row["leased_mb"] = s.leased[pid]
            row["max_excess_mb"] = max(row["max_excess_mb"], excess)
            if excess > out.max_excess_mb:
                out.max_excess_mb, out.max_excess_by = excess, name
            if excess > tolerance_mb:
                since = over_since.setdefault(pid, s.t)
                past_grace = past_grace or s.t - since > grace_s
            else:
                over_since.pop(pid, None)
        if past_grace:
            out.over_lease_past_grace += 1
    return out


def leases_by_pid(
    slots: Sequence[Mapping[str, Any]],
    ledger_leases: Sequence[Mapping[str, Any]],
    pool: str,
) -> tuple[dict[int, int], dict[int, str]]:
    """Which process each lease on ``pool`` covers: a coordinator slot's leases cover its
    backend's pid; any other holder's lease covers the holder's own pid."""
    by_token = {int(lease["token"]): lease for lease in ledger_leases if lease["pool"] == pool}
    leased: dict[int, int] = {}
    names: dict[int, str] = {}
    slot_tokens: set[int] = set()
    for slot in slots:
        backend = slot.get("backend") or {}
        pid = backend.get("pid")
        tokens = [int(t) for t in slot.get("lease_tokens") or []]
        slot_tokens.update(tokens)
        if pid is None:
            continue
        mb = sum(int(by_token[t]["mb"]) for t in tokens if t in by_token)
        if mb:
            leased[int(pid)] = leased.get(int(pid), 0) + mb
            names[int(pid)] = f"{slot['model']}#{slot['slot_id']}"
    coordinators = {int(lease["pid"]) for t, lease in by_token.items() if t in slot_tokens}
    for token, lease in by_token.items():
        pid = int(lease["pid"])
        if token in slot_tokens or pid in coordinators:
            continue
        leased[pid] = leased.get(pid, 0) + int(lease["mb"])
        names[pid] = str(lease.get("model_id") or lease["holder"])
    return leased, names


# -- the pieces that run -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def llama_devices(binary: str) -> list[str]:
    """The devices a llama-server binary can offload to (``--list-devices``)."""
    try:
        out = subprocess.run(
            [binary, "--list-devices"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"error: {exc}"]
    lines = (out.stdout + out.stderr).splitlines()
    if "Available devices:" not in lines:
        return []
    after = lines[lines.index("Available devices:") + 1 :]
    return [line.strip() for line in after if line.strip() and line.strip() != "(none)"]


def find_or_build_llama_server(given: str | None, want_cuda: bool) -> tuple[str, float, list[str]]:
    """A llama-server binary (CUDA when ``want_cuda``), building one if needed."""
    from model_boss.backends import find_llama_server

    built_s = 0.0
    binary = given or str(find_llama_server()) if given or _has_llama_server() else None
    devices = llama_devices(binary) if binary else []
    if want_cuda and not any("CUDA" in d for d in devices):
        started = time.monotonic()
        env = {**os.environ, "MODEL_BOSS_LLAMA_GPU": "cuda", "PYTHON": sys.executable}
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "build-llama-server.sh")], env=env, check=True
        )
        built_s = time.monotonic() - started
        binary = str(find_llama_server())
        devices = llama_devices(binary)
    if binary is None:
        raise SystemExit("gpu_check: no llama-server; run `make setup` first")
    return binary, built_s, devices


def _has_llama_server() -> bool:
    from model_boss.backends import BackendStartError, find_llama_server

    try:
        find_llama_server()
    except BackendStartError:
        return False
    return True


def write_manifest(folder: Path, model: Path, gpu: bool) -> Path:
    lines = ["models:"]
    for model_id, ctx in MODELS:
        lines += [
            f"  {model_id}:",
            f"    path: {json.dumps(str(model))}",
            "    category: llm",
            f"    context_size: {ctx}",
            "    target_inflight: 2",
            "    llama_server:",
            "      parallel: 2",
        ]
        if not gpu:
            lines.append("      threads: 1")
    path = folder / "manifest.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def coordinator(
    manifest: Path, ledger: str, state: Path, binary: str, extra_env: Mapping[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **os.environ,
        "MODEL_BOSS_STATE_DIR": str(state),
        "MODEL_BOSS_LLAMA_SERVER": binary,
        **extra_env,
    }
    log = open(state / "coordinator.log", "wb")  # noqa: SIM115 - closed below
    argv = [sys.executable, "-m", "model_boss.cli", "serve", "--settings", str(manifest)]
    argv += ["--port", str(port), "--ledger", ledger]
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"model-boss serve exited: {(state / 'coordinator.log').read_text()[-2000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("model-boss serve did not answer /health within 60 s")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


KIT_PROGRAM = r"""
import asyncio, json, sys
from model_boss.leases import GPUBoss, RAMBoss
from model_boss.loaders import FunctionLoader, ManagedModelLoader

LEDGER, MB, ON_GPU = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "gpu"
RESERVE = 700 if ON_GPU else 0  # CUDA context + allocator slack: not in the tensor

def load(path, target):
    if ON_GPU:
        import torch
        total = torch.cuda.get_device_properties(0).total_memory // 2**20
        torch.cuda.set_per_process_memory_fraction(min(1.0, MB / total), 0)
        block = torch.ones((MB - RESERVE) * 2**20 // 4, dtype=torch.float32, device="cuda")
        torch.cuda.synchronize()
        return block
    block = bytearray(min(MB, 256) * 2**20 * 3 // 4)  # the books matter here, not the RAM
    for i in range(0, len(block), 4096):
        block[i] = 1
    return block

def unload(block):
    # Dropping the tensor leaves it in torch's cache, still the process's on the GPU (the
    # ledger would count it as foreign memory once the lease is gone): give it back.
    del block
    if ON_GPU:
        import torch
        torch.cuda.empty_cache()

async def main():
    gpu = GPUBoss(LEDGER, holder="gpu-check-kit") if ON_GPU else None
    ram = RAMBoss(LEDGER, holder="gpu-check-kit")
    # Urgent and deaf to preemption: the room the coordinator has stays what it is.
    async with ManagedModelLoader(
        gpu or GPUBoss(LEDGER), ram_boss=ram, priority="urgent", unload_when_preempted=False
    ) as kit:
        m = await kit.load("kit-block", loader=FunctionLoader(load, unload), vram_mb=MB,
                           device="gpu" if ON_GPU else "cpu", timeout=60)
        print(json.dumps({"kit_pid": __import__("os").getpid(), "lease_mb": m.mb}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


@contextlib.contextmanager
def kit_program(ledger: str, mb: int, on_gpu: bool) -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", KIT_PROGRAM, ledger, str(mb), "gpu" if on_gpu else "ram"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(
                f"kit program failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
            )
        yield json.loads(line)
    finally:
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Sampler(threading.Thread):
    """Samples used vs leased every ``interval_s`` until stopped."""

    def __init__(
        self, url: str, ledger: str, pool: str, usage: UsageSource, interval_s: float = 0.25
    ):
        super().__init__(daemon=True)
        self.url, self.ledger, self.pool, self.usage = url, ledger, pool, usage
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self.errors = 0
        self._halt = threading.Event()
        self._client = httpx.Client(timeout=5)

    def run(self) -> None:
        from model_boss.leases import SyncRAMBoss

        boss = SyncRAMBoss(self.ledger, holder="gpu-check-auditor")
        start = time.monotonic()
        while not self._halt.wait(self.interval_s):
            try:
                slots = self._client.get(self.url + "/v1/pool/status").json()["slots"]
                pools = boss.status().pools
                leases = [
                    {**lease.to_dict()} if hasattr(lease, "to_dict") else lease.__dict__
                    for p in pools
                    if p.pool == self.pool
                    for lease in p.leases
                ]
                leased, names = leases_by_pid(slots, leases, self.pool)
                used = self.usage()
            except Exception:  # a poll that raced a restart: count it, go on
                self.errors += 1
                continue
            self.samples.append(Sample(time.monotonic() - start, used, leased, names))
        boss.close()
        self._client.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def chat(
    client: httpx.Client,
    url: str,
    model: str,
    tokens: int,
    headers: dict[str, str] | None = None,
) -> tuple[int, float, int]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "temperature": 0.7,
    }
    started = time.monotonic()
    reply = client.post(url + "/v1/chat/completions", json=body, headers=headers)
    wall = time.monotonic() - started
    if reply.status_code != 200:
        return reply.status_code, wall, 0
    return 200, wall, int(reply.json().get("usage", {}).get("completion_tokens", 0))


def tokens_per_s(
    client: httpx.Client,
    url: str,
    model: str,
    rounds: int,
    tokens: int,
    headers: dict[str, str] | None = None,
) -> float:
    done, wall = 0, 0.0
    for _ in range(rounds):
        status, seconds, count = chat(client, url, model, tokens, headers)
        if status == 200:
            done, wall = done + count, wall + seconds
    return done / wall if wall else 0.0


def cold_request(client: httpx.Client, url: str, model: str) -> float | str:
    """Seconds for a first request to answer (it loads the model, evicting others as the
    scheduler decides; an admin load would pin it), or why it failed."""
    started = time.monotonic()
    status, _, _ = chat(client, url, model, 8)
    if status != 200:
        return f"HTTP {status}"
    return round(time.monotonic() - started, 2)


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")) and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run(args: argparse.Namespace) -> dict[str, Any]:
    from model_boss.backends import fetch_demo_model
    from model_boss.devices import NvmlProbe

    probe = NvmlProbe()
    gpus = probe.devices()
    on_gpu = bool(gpus)
    report: dict[str, Any] = {
        "check": "gpu_check",
        "gpu": None if not on_gpu else {"name": gpus[0].name, "total_mb": gpus[0].total_mb},
        "ok": False,
    }
    if not on_gpu:
        report["note"] = (
            "no NVIDIA GPU found (NVML sees none): ran the same flow on the RAM pool, "
            "memory measured as PSS; nothing on CUDA was checked"
        )
    seconds = args.seconds if args.seconds is not None else (60 if on_gpu else 15)
    binary, built_s, devices = find_or_build_llama_server(args.llama_server, on_gpu)
    report["llama_server"] = {"binary": binary, "devices": devices, "build_s": round(built_s, 1)}
    model = Path(args.model) if args.model else fetch_demo_model()

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        folder = Path(tmp)
        ledger = f"sqlite:///{folder / 'ledger.db'}"
        manifest = write_manifest(folder, model, on_gpu)
        if on_gpu:
            import pynvml

            usage, total = nvml_usage(pynvml, gpus[0].index)
            pool_suffix = f"gpu{gpus[0].index}"
            kit_mb = max(1024, total - args.room_mb)
        else:
            total = 0  # the RAM pool's capacity, read from the coordinator below
            pool_suffix = "ram"
            kit_mb = 0  # all of the RAM pool but the room, once its size is known
        sampler: Sampler | None = None
        try:
            with coordinator(manifest, ledger, folder, binary, {}) as (url, _serve):
                pool, capacity = next(
                    (p["pool"], int(p["capacity_mb"]))
                    for p in httpx.get(url + "/v1/pool/status").json()["pools"]
                    if p["pool"].endswith(pool_suffix)
                )
                total = total or capacity
                kit_mb = kit_mb or max(256, total - args.room_mb)
                report["pool"] = {"name": pool, "total_mb": total}
                tracked: list[int] = []
                sampler = Sampler(
                    url, ledger, pool, usage if on_gpu else pss_usage(lambda: list(tracked))
                )
                sampler.start()
                try:
                    drive(report, url, ledger, kit_mb, on_gpu, seconds, tracked)
                finally:
                    sampler.stop()
        except Exception as exc:  # report what was seen up to here, and why it stopped
            report["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            if args.logs:
                keep_logs(folder, Path(args.logs))
        if sampler is not None:
            result = audit(sampler.samples, total, args.grace_s)
            report["audit"] = {**result.to_dict(), "sampler_errors": sampler.errors}
            report["timeline"] = timeline(sampler.samples)
            report["ok"] = (
                "error" not in report
                and result.overcommit_instants == 0
                and result.over_lease_past_grace == 0
            )
    return report


def drive(
    report: dict[str, Any],
    url: str,
    ledger: str,
    kit_mb: int,
    on_gpu: bool,
    seconds: float,
    tracked: list[int],
) -> None:
    """Loads, mixed traffic beside the kit program, then a speed test without it."""
    client = httpx.Client(timeout=300)
    with kit_program(ledger, kit_mb, on_gpu) as kit:
        tracked.append(int(kit["kit_pid"]))
        report["kit"] = kit
        # Cold loads through requests, one model at a time (with the kit holding most of
        # the GPU, each load may evict the one before).
        loads: dict[str, float | str] = {}
        for model_id, _ in MODELS:
            loads[model_id] = cold_request(client, url, model_id)
            tracked[:] = [int(kit["kit_pid"]), *_backend_pids(client, url)]
        report["load_s"] = loads
        # Mixed concurrent traffic over the three models: swaps under pressure.
        statuses: dict[str, int] = {}
        deadline = time.monotonic() + seconds

        def worker(i: int) -> None:
            local = httpx.Client(timeout=300)
            n = i
            while time.monotonic() < deadline:
                model_id = MODELS[n % len(MODELS)][0]
                status, _, _ = chat(local, url, model_id, 48)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                tracked[:] = [int(kit["kit_pid"]), *_backend_pids(local, url)]
                n += 1
            local.close()

        with ThreadPoolExecutor(6) as pool_exec:
            list(pool_exec.map(worker, range(6)))
        report["mixed"] = {"seconds": seconds, "answers_by_status": statuses}
    # The kit has gone: the first model gets the room to itself for a speed test.
    model_id = MODELS[0][0]
    cold_request(client, url, model_id)
    tracked[:] = _backend_pids(client, url)
    via = tokens_per_s(client, url, model_id, 3, 128)
    port = _backend_port(client, url, model_id)
    key = _backend_key(client, url, model_id)
    auth = {"Authorization": f"Bearer {key}"} if key else None
    direct = (
        tokens_per_s(client, f"http://127.0.0.1:{port}", model_id, 3, 128, auth) if port else 0.0
    )
    report["tokens_per_s"] = {
        "coordinator": round(via, 1),
        "direct": round(direct, 1),
        "ratio": round(via / direct, 3) if direct else None,
    }
    metrics = client.get(url + "/metrics").text
    report["coordinator"] = {
        "loads": metric(metrics, "model_boss_loads_total"),
        "evictions": metric(metrics, "model_boss_evictions_total", reason="room")
        + metric(metrics, "model_boss_evictions_total", reason="preemption"),
        "load_failures": metric(metrics, "model_boss_load_failures_total"),
        "load_seconds_mean": round(
            metric(metrics, "model_boss_load_duration_seconds_sum")
            / max(1.0, metric(metrics, "model_boss_load_duration_seconds_count")),
            2,
        ),
    }
    pool_status = client.get(url + "/v1/pool/status").json()
    report["slots"] = [
        {
            k: s.get(k)
            for k in ("model", "state", "mb_per_pool", "leased_bytes", "used_bytes", "stop_reason")
        }
        for s in pool_status["slots"]
    ]
    client.close()


def timeline(samples: Sequence[Sample], every_s: float = 2.0) -> list[list[float]]:
    """[t, MiB used by leased processes, MiB leased] every ``every_s`` seconds."""
    out: list[list[float]] = []
    for s in samples:
        if not out or s.t - out[-1][0] >= every_s:
            used = sum(mb for pid, mb in s.used.items() if pid in s.leased)
            out.append([round(s.t, 1), used, sum(s.leased.values())])
    return out


def keep_logs(folder: Path, dest: Path) -> None:
    """The coordinator's and the backends' logs, for a run that went wrong."""
    dest.mkdir(parents=True, exist_ok=True)
    for log in [folder / "coordinator.log", *sorted((folder / "logs").glob("*.log"))]:
        if log.is_file():
            dest.joinpath(log.name).write_bytes(log.read_bytes()[-4_000_000:])


def _slots(client: httpx.Client, url: str) -> list[dict[str, Any]]:
    slots: list[dict[str, Any]] = client.get(url + "/v1/pool/status").json()["slots"]
    return slots


def _backend_pids(client: httpx.Client, url: str) -> list[int]:
    return [
        int(s["backend"]["pid"]) for s in _slots(client, url) if (s.get("backend") or {}).get("pid")
    ]


def _backend_key(client: httpx.Client, url: str, model: str) -> str | None:
    """The key the coordinator gave its child (``LLAMA_API_KEY`` in the child's environment,
    readable by the same user): the direct measurement calls the child as the coordinator
    does."""
    for s in _slots(client, url):
        pid = (s.get("backend") or {}).get("pid")
        if s["model"] != model or not pid:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return None
        for item in environ:
            if item.startswith(b"LLAMA_API_KEY="):
                return item.split(b"=", 1)[1].decode()
    return None


def _backend_port(client: httpx.Client, url: str, model: str) -> int | None:
    for s in _slots(client, url):
        backend = s.get("backend") or {}
        if s["model"] == model and backend.get("port"):
            return int(backend["port"])
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--room-mb", type=int, default=3000)
    parser.add_argument("--grace-s", type=float, default=15.0)
    parser.add_argument("--llama-server", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--logs", default=None, help="copy the coordinator's and backends' logs here"
    )
    args = parser.parse_args(argv)
    report = run(args)
    line = json.dumps(report, sort_keys=True)
    print(line, flush=True)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
