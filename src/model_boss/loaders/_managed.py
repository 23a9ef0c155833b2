"""ManagedModelLoader: take a lease, then load; give the memory back when the model goes.

The construction kit's recipe in one object::

    async with ManagedModelLoader() as loader:              # GPUBoss()/RAMBoss() on the ledger
        model = await loader.load("chat", "models/chat.gguf")  # lease first, then load
        text = await model.chat([{"role": "user", "content": "hi"}])
    # every model unloaded and every lease released here

A model stays loaded until ``unload``, ``close``, ``idle_timeout_s`` without use, a
preemption request from a more urgent waiter on the ledger (honoured at the first idle
moment; new uses are refused meanwhile), or the loss of its lease (unloaded at once: the
memory may already be someone else's).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from model_boss.backends import GpuProcessProbe
from model_boss.config import ModelSpec, Settings, load_settings, vram_for
from model_boss.errors import UnknownDevice
from model_boss.leases import GPUBoss, Lease, RAMBoss
from model_boss.loaders._base import Loader, ModelLoadFailed, ModelUnloaded, Target, UnknownLoader
from model_boss.loaders._idle import IdleResourceManager
from model_boss.loaders._kinds import loader_for, loader_kind_for_backend
from model_boss.loaders._usage import in_process_mb, measure_loaded
from model_boss.priority import Priority, PriorityLike, parse_priority

__all__ = ["ManagedModel", "ManagedModelLoader", "ModelState"]

log = logging.getLogger("model_boss.loaders")

DEVICES = ("auto", "gpu", "cuda", "cpu")


class ModelState(enum.Enum):
    LOADED = "loaded"
    UNLOADING = "unloading"  # no new uses; waiting for running ones, or letting go
    UNLOADED = "unloaded"


class ManagedModel:
    """A model loaded under a lease.

    ``model`` is the framework's object. ``async with managed.use() as obj:`` counts as use
    (for idle unloading and for preemption, which waits for running uses) and fails with
    :class:`ModelUnloaded` or :class:`~model_boss.errors.LeaseLost` once the model may no
    longer be used. Other attributes fall through to the loaded object, and its ``async``
    methods run inside ``use()``: ``await managed.chat(...)`` is ``use()`` + ``obj.chat``.
    """

    def __init__(
        self,
        model_id: str,
        kind: str,
        path: Path | None,
        target: Target,
        lease: Lease,
        obj: Any,
        owner: ManagedModelLoader,
        idle: IdleResourceManager,
        loader: Loader,
    ) -> None:
        self.id = model_id
        self.kind = kind
        self.path = path
        self.target = target
        self.lease = lease
        self.loaded_at = time.time()
        self.state = ModelState.LOADED
        self.unload_reason = ""
        self._obj = obj
        self._owner = owner
        self._idle = idle
        self._loader = loader
        self._gone = asyncio.Event()  # set once unloaded and the lease released
        self.used_mb: int | None = None  # what the usage watch last measured
        self.baseline_mb = 0  # this process's use on the target before an in-process load
        self._letting_go = False
        self._watcher: asyncio.Task[None] | None = None

    # -- what it is ---------------------------------------------------------------------

    @property
    def model(self) -> Any:
        """The loaded object (pipeline, model, session...); raises once unloaded."""
        self._check()
        return self._obj

    @property
    def device(self) -> str:
        return self.target.device

    @property
    def mb(self) -> int:
        return self.target.mb

    @property
    def loaded(self) -> bool:
        return self.state is ModelState.LOADED

    @property
    def in_use(self) -> int:
        return self._idle.in_use

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "path": None if self.path is None else str(self.path),
            "state": self.state.value,
            "device": self.device,
            "mb": self.mb,
            "pool": self.lease.pool,
            "lease_id": self.lease.id,
            "token": self.lease.token,
            "in_use": self.in_use,
            "leased_mb": self.lease.mb,
            "used_mb": self.used_mb,
            "over_lease": self.over_lease,
            "idle_s": round(self._idle.idle_s, 3),
            "loaded_at": self.loaded_at,
            "unload_reason": self.unload_reason or None,
        }

    @property
    def over_lease(self) -> bool:
        """Last measured beyond its lease by more than max(5 %, 64 MB)."""
        if self.used_mb is None:
            return False
        return self.used_mb - self.lease.mb > max(0.05 * self.lease.mb, 64)

    def __repr__(self) -> str:
        return f"<ManagedModel {self.id} {self.kind} on {self.device} {self.state.value}>"

    # -- using it -----------------------------------------------------------------------

    def _check(self) -> None:
        if self.state is not ModelState.LOADED:
            why = f": {self.unload_reason}" if self.unload_reason else ""
            raise ModelUnloaded(f"model {self.id!r} is {self.state.value}{why}")
        self.lease.ensure_valid()

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[Any]:
        """Use the model for the duration of the block; yields the loaded object."""
        self._check()
        async with self._idle.busy():
            yield self._obj

    def touch(self) -> None:
        """Count now as a use (restarts the idle clock)."""
        self._idle.touch()

    async def unload(self, reason: str = "unload") -> None:
        await self._owner._let_go(self, reason)

    async def wait_unloaded(self) -> None:
        """Return once this model is unloaded and its lease released."""
        await self._gone.wait()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self.model, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            async with self.use():
                return await attr(*args, **kwargs)

        return call


class ManagedModelLoader:
    """Loads models under leases from the shared ledger and keeps them tracked by id.

    ``boss``: the GPUBoss for VRAM (default ``GPUBoss()`` on the default ledger);
    ``ram_boss``: the RAMBoss for models loaded to the CPU (default: a RAMBoss on the same
    ledger). ``settings``: the manifest that ``load(model_id)`` without a path resolves
    against (default: ``MODEL_BOSS_SETTINGS``, read on first need). ``idle_timeout_s``:
    unload a model unused this long (None: never). ``unload_when_preempted``: give the
    memory back when a more urgent waiter asks (at the first idle moment).
    ``usage_interval_s``: how often each loaded model's real use is measured (``used_mb``
    in its status; None: never); ``gpu_probe``: the per-process GPU memory source (NVML).
    """

    def __init__(
        self,
        boss: GPUBoss | None = None,
        *,
        ram_boss: RAMBoss | None = None,
        settings: Settings | None = None,
        priority: PriorityLike = Priority.NORMAL,
        idle_timeout_s: float | None = None,
        unload_when_preempted: bool = True,
        loaders: Mapping[str, Loader] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        usage_interval_s: float | None = 2.0,
        gpu_probe: GpuProcessProbe | None = None,
    ) -> None:
        if idle_timeout_s is not None and not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be positive, got {idle_timeout_s}")
        self.priority = parse_priority(priority)
        self.idle_timeout_s = idle_timeout_s
        self.unload_when_preempted = unload_when_preempted
        self._boss = boss
        self._ram_boss = ram_boss
        self._owns: list[GPUBoss | RAMBoss] = []
        self._settings = settings
        self._loaders = dict(loaders or {})
        self._log_dir = log_dir
        self._models: dict[str, ManagedModel] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._usage_interval_s = usage_interval_s or None
        self._gpu_probe = gpu_probe
        self._usage_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ManagedModelLoader:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- the ledger ---------------------------------------------------------------------

    @property
    def boss(self) -> GPUBoss:
        if self._boss is None:
            self._boss = GPUBoss()
            self._owns.append(self._boss)
        return self._boss

    @property
    def ram_boss(self) -> RAMBoss:
        if self._ram_boss is None:
            self._ram_boss = RAMBoss(self.boss.url)
            self._owns.append(self._ram_boss)
        return self._ram_boss

    # -- queries ------------------------------------------------------------------------

    def get(self, model_id: str) -> ManagedModel | None:
        """The loaded model ``model_id``, or None."""
        m = self._models.get(model_id)
        return m if m is not None and m.loaded else None

    @property
    def loaded(self) -> list[ManagedModel]:
        return [m for m in self._models.values() if m.loaded]

    def status(self) -> list[dict[str, Any]]:
        return [m.status() for m in self._models.values()]

    # -- loading ------------------------------------------------------------------------

    async def load(
        self,
        model_id: str,
        path: str | os.PathLike[str] | None = None,
        *,
        loader: str | Loader | None = None,
        vram_mb: int | None = None,
        device: str = "auto",
        gpu: int | None = None,
        priority: PriorityLike | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the wait for memory, as in acquire()
        **options: Any,
    ) -> ManagedModel:
        """The model ``model_id``, loaded under a lease (at once if it is loaded already).

        ``path`` (a file or directory) and ``loader`` (``gguf``, ``diffusers``, ``hf``,
        ``onnx``, or a :class:`Loader`) default to the manifest entry of ``model_id``; the
        loader is otherwise told from the path. ``vram_mb`` defaults to the manifest's or
        the loader's estimate. ``device``: ``auto`` (a GPU when the boss has any, else the
        CPU with a RAM lease), ``gpu``/``cuda``, or ``cpu``. ``timeout`` bounds the wait
        for memory (None: wait). Other keyword arguments go to the loader.
        """
        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        lock = self._locks.setdefault(model_id, asyncio.Lock())
        async with lock:
            current = self._models.get(model_id)
            if current is not None and current.loaded:
                current.touch()
                return current
            resolved, kind_loader, mb, opts = self._resolve(
                model_id, path, loader, vram_mb, options
            )
            target, lease = await self._lease(model_id, mb, device, gpu, priority, timeout)
            try:
                baseline = await asyncio.to_thread(in_process_mb, target, self._gpu_probe)
                obj = await kind_loader.load(model_id, resolved, target, opts)
            except BaseException as exc:
                await lease.release()
                if isinstance(exc, Exception):
                    raise ModelLoadFailed(
                        f"model {model_id!r} ({kind_loader.kind}) failed to load: {exc}"
                    ) from exc
                raise
            holder: list[ManagedModel] = []  # the idle callback needs the model made below
            idle = IdleResourceManager(
                lambda: self._unload_when_idle(holder[0], "idle"),
                self.idle_timeout_s if self.idle_timeout_s is not None else math.inf,
            )
            managed = ManagedModel(
                model_id, kind_loader.kind, resolved, target, lease, obj, self, idle, kind_loader
            )
            holder.append(managed)
            managed.baseline_mb = baseline
            self._models[model_id] = managed
            self._watch_usage_soon()
            idle.start()
            managed._watcher = asyncio.get_running_loop().create_task(
                self._watch(managed), name=f"model-boss-watch-{model_id}"
            )
            log.info("loaded %s (%s) on %s under %r", model_id, managed.kind, target.device, lease)
            return managed

    def _resolve(
        self,
        model_id: str,
        path: str | os.PathLike[str] | None,
        loader: str | Loader | None,
        vram_mb: int | None,
        options: Mapping[str, Any],
    ) -> tuple[Path | None, Loader, int, dict[str, Any]]:
        opts = dict(options)
        spec: ModelSpec | None = None
        resolved = None if path is None else Path(path).expanduser()
        if path is None and loader is None:
            spec = self._spec(model_id)
        if spec is not None:
            resolved = self._spec_path(spec)
            opts = {**_spec_options(spec), **opts}
            if loader is None:
                loader = loader_kind_for_backend(spec.backend, model_id)
        if resolved is not None and not resolved.exists():
            raise FileNotFoundError(f"model {model_id!r}: {resolved}: no such file or directory")
        chosen = self._loader(loader, resolved)
        mb = vram_mb
        if mb is None and spec is not None and spec.vram_mb is not None:
            mb = spec.vram_mb
        if mb is None and spec is not None and resolved is not None:
            mb = vram_for(spec, self._models_root())
        if mb is None:
            mb = chosen.estimate_mb(resolved, opts)
        if mb is None:
            raise ValueError(
                f"model {model_id!r}: give vram_mb (the {chosen.kind} loader cannot estimate it)"
            )
        return resolved, chosen, mb, opts

    def _spec(self, model_id: str) -> ModelSpec | None:
        if self._settings is None:
            self._settings = load_settings()
        spec = self._settings.models.get(model_id)
        if spec is None:
            known = ", ".join(sorted(self._settings.models)) or "none"
            raise UnknownLoader(
                f"model {model_id!r} is not in the manifest (known: {known}); give its path"
            )
        return spec

    def _models_root(self) -> str | None:
        return None if self._settings is None else self._settings.service.models_root

    def _spec_path(self, spec: ModelSpec) -> Path | None:
        if spec.path is None:
            return None
        p = Path(spec.path).expanduser()
        root = self._models_root()
        return Path(root).expanduser() / p if not p.is_absolute() and root else p

    def _loader(self, loader: str | Loader | None, path: Path | None) -> Loader:
        if loader is not None and not isinstance(loader, str):
            return loader
        if isinstance(loader, str) and loader in self._loaders:
            return self._loaders[loader]
        return loader_for(loader, path, log_dir=self._log_dir)

    async def _lease(
        self,
        model_id: str,
        mb: int,
        device: str,
        gpu: int | None,
        priority: PriorityLike | None,
        timeout: float | None,  # noqa: ASYNC109 - passed on to acquire()
    ) -> tuple[Target, Lease]:
        prio = self.priority if priority is None else parse_priority(priority)
        want_gpu = device in ("gpu", "cuda") or gpu is not None
        if device == "auto" and not want_gpu:
            want_gpu = bool(self.boss.devices)
        if want_gpu:
            if device == "cpu":
                raise ValueError("gpu= and device='cpu' contradict each other")
            if not self.boss.devices:
                raise UnknownDevice("device='gpu' but this host has no GPUs (none declared)")
            lease = await self.boss.acquire(
                mb, priority=prio, model_id=model_id, gpu=gpu, timeout=timeout
            )
            index = lease.gpu_index
            assert index is not None
            total = self.boss.devices[index].total_mb if index in self.boss.devices else 0
            return Target(torch_device(index), index, mb, total), lease
        lease = await self.ram_boss.acquire(mb, priority=prio, model_id=model_id, timeout=timeout)
        return Target("cpu", None, mb), lease

    # -- unloading ----------------------------------------------------------------------

    async def unload(self, model_id: str, *, reason: str = "unload") -> bool:
        """Unload ``model_id`` now and release its lease; False if it was not loaded."""
        m = self._models.get(model_id)
        if m is None:
            return False
        await self._let_go(m, reason)
        return True

    async def unload_all(self) -> None:
        for m in list(self._models.values()):
            await self._let_go(m, "unload all")

    async def close(self) -> None:
        """Unload everything, release every lease, close the bosses this loader made."""
        await self.unload_all()
        if self._usage_task is not None:
            self._usage_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._usage_task
            self._usage_task = None
        for boss in self._owns:
            await boss.close()
        self._owns.clear()

    # -- the usage watch ----------------------------------------------------------------

    async def measure_usage(self) -> None:
        """Measure what each loaded model uses now (``used_mb`` in its status); a model
        over its lease is logged (the kit reports it; the coordinator enforces)."""
        for m in list(self._models.values()):
            if not m.loaded:
                continue
            was_over = m.over_lease
            try:
                m.used_mb = await measure_loaded(m._obj, m.target, m.baseline_mb, self._gpu_probe)
            except Exception as exc:
                log.warning("measuring %s failed: %s", m.id, exc)
                continue
            if m.over_lease and not was_over:
                log.warning(
                    "%s uses %d MB on %s, its lease holds %d MB",
                    m.id,
                    m.used_mb,
                    m.lease.pool,
                    m.lease.mb,
                )

    def _watch_usage_soon(self) -> None:
        if self._usage_interval_s is None or self._usage_task is not None:
            return
        self._usage_task = asyncio.get_running_loop().create_task(
            self._watch_usage(self._usage_interval_s), name="model-boss-usage"
        )

    async def _watch_usage(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.measure_usage()
            except Exception:  # the watch must outlive one bad measurement
                log.exception("measuring the loaded models failed")

    async def _unload_when_idle(self, m: ManagedModel, reason: str) -> None:
        """Refuse new uses, wait for the running ones, then unload."""
        if m.state is not ModelState.LOADED:
            return
        m.state = ModelState.UNLOADING
        m.unload_reason = reason
        await m._idle.wait_idle()
        await self._let_go(m, reason)

    async def _let_go(self, m: ManagedModel, reason: str) -> None:
        """Unload ``m`` (this instance: a reload under the same id is left alone) and
        release its lease. Concurrent calls wait for the first."""
        if m._letting_go:
            await m._gone.wait()
            return
        m._letting_go = True
        m.state = ModelState.UNLOADING
        m.unload_reason = m.unload_reason or reason
        try:
            await m._loader.unload(m._obj)
        except Exception:
            log.exception("unloading %s failed; its lease is released anyway", m.id)
        finally:
            m._obj = None
            m.state = ModelState.UNLOADED
            await m._idle.stop()
            await m.lease.release()
            if self._models.get(m.id) is m:
                del self._models[m.id]
            watcher = m._watcher
            if watcher is not None and watcher is not asyncio.current_task():
                watcher.cancel()
            m._gone.set()
            log.info("unloaded %s (%s)", m.id, m.unload_reason)

    async def _watch(self, m: ManagedModel) -> None:
        """Turn the lease's news into unloads: lost at once, preempted when idle."""
        lease = m.lease
        lost = asyncio.ensure_future(lease.lost.wait())
        asked = asyncio.ensure_future(lease.preempted.wait())
        waits = {lost, asked} if self.unload_when_preempted else {lost}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if lost.done():
                m.unload_reason = "lease lost: the memory may be someone else's"
                await self._let_go(m, m.unload_reason)
            else:
                why = f"preempted ({lease.preempt_reason})" if lease.preempt_reason else "preempted"
                await self._unload_when_idle(m, why)
        finally:
            lost.cancel()
            asked.cancel()


def torch_device(gpu_index: int, env: Mapping[str, str] | None = None) -> str:
    """``cuda:N`` for physical GPU ``gpu_index`` as this process's torch numbers it.

    With ``CUDA_VISIBLE_DEVICES`` set, torch counts only the visible GPUs, in that order.
    """
    visible = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if visible is None or not visible.strip():
        return f"cuda:{gpu_index}"
    order = [v.strip() for v in visible.split(",")]
    if str(gpu_index) not in order:
        raise UnknownDevice(f"GPU {gpu_index} is not in CUDA_VISIBLE_DEVICES={visible!r}")
    return f"cuda:{order.index(str(gpu_index))}"


def _spec_options(spec: ModelSpec) -> dict[str, Any]:
    """Loader options from a manifest entry: its backend table and the shared fields."""
    out: dict[str, Any] = {}
    for key in ("context_size", "chat_template", "pipeline_type", "dtype"):
        value = getattr(spec, key)
        if value is not None:
            out[key] = value
    table = spec.options.get(spec.backend)
    if isinstance(table, Mapping):
        out[spec.backend] = dict(table)
    return out
