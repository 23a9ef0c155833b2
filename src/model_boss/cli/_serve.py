"""``model-boss serve``: the coordinator on the embedded default or a manifest."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from model_boss.cli._serve_keys import add_key_arguments, service_keys
from model_boss.cli._serve_limits import add_limit_arguments, connection_limits, queue_settings

__all__ = ["LOG_LEVELS", "register"]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def register(groups: Any) -> None:
    serve = groups.add_parser(
        "serve", help="run the coordinator: OpenAI-compatible API, queue, model pool"
    )
    serve.add_argument("--host", default=None, help="default: the settings' (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="default: the settings' (8210)")
    serve.add_argument(
        "--settings", default=None, help="settings/manifest file (default: MODEL_BOSS_SETTINGS)"
    )
    serve.add_argument(
        "--local-settings",
        default=None,
        help="override merged over it (default: MODEL_BOSS_LOCAL_SETTINGS, or local.* beside it)",
    )
    serve.add_argument("--ledger", default=None, help="ledger URL (default: SQLite, or Redis)")
    add_key_arguments(serve)
    add_limit_arguments(serve)
    serve.add_argument(
        "--usage-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="measure each loaded model's real memory this often (default 2; 0: never)",
    )
    serve.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default=None,
        help="default: the settings' (info)",
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from model_boss.api import create_app
    from model_boss.api._connection_guard import uvicorn_options
    from model_boss.config import Settings, load_settings, parse_manifest
    from model_boss.devices import hostname
    from model_boss.engine import Engine, SlotLedger, default_models, engine_models, service_limits
    from model_boss.leases import GPUBoss, RAMBoss, default_state_dir

    api_keys, admin_keys = service_keys(args)
    settings = load_settings(args.settings, args.local_settings)
    if not settings.models:
        demo = default_models()
        settings = Settings(
            settings.service, parse_manifest(demo, "<default manifest>"), settings.sources
        )
        if not demo:
            print(
                "model-boss: no models configured and the demo model is not pulled yet; "
                "run `model-boss model pull smollm2` (or set MODEL_BOSS_SETTINGS)",
                file=sys.stderr,
            )
    level = (args.log_level or settings.service.log_level).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    holder = f"coordinator@{hostname()}:{os.getpid()}"
    gpu = GPUBoss(args.ledger, holder=holder)
    ram = RAMBoss(args.ledger, holder=holder)
    totals = [d.total_mb for d in gpu.devices.values()]
    models = engine_models(settings, gpu_total_mb=max(totals) if totals else None)
    on_cpu = any(m.profile.pool_kind == "ram" for m in models)
    ledger = SlotLedger(gpu if gpu.devices else None, ram, ram_pool=on_cpu)
    log_dir = default_state_dir() / "logs"
    engine = Engine(
        models,
        ledger,
        config=service_limits(queue_settings(args, settings.service)),
        log_dir=str(log_dir),
        demand_file=default_state_dir() / "demand.json",
        usage_interval_s=args.usage_interval or None,
    )
    app = create_app(
        engine,
        api_keys=api_keys,
        admin_keys=admin_keys,
    )
    host = args.host or settings.service.host
    port = args.port or settings.service.port
    pools = ", ".join(f"{p.pool_id} ({p.capacity_mb} MiB)" for p in ledger.pools)
    print(
        f"model-boss: serving {len(engine.models)} model(s) "
        f"[{', '.join(engine.models) or 'none'}] on http://{host}:{port}; "
        f"ledger {ledger.url}; pools {pools}",
        flush=True,
    )
    limits = connection_limits(args, settings.service)
    options = uvicorn_options(limits)
    uvicorn.run(app, host=host, port=port, log_level=level.lower(), access_log=False, **options)
    return 0
