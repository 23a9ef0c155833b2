"""The diffusers worker process: holds one pipeline, answers image requests with PNGs.

Run by :class:`DiffusersBackend` as ``python -m model_boss.backends._diffusers_worker``.
It binds its port at once and answers ``GET /health`` with 503 while the pipeline loads
and 200 once it is loaded; a load failure prints the traceback and exits 1, which the
supervisor reports with those lines.

``POST /v1/images/generations`` takes the OpenAI body (``prompt``, ``n``, ``size`` as
``"WxH"``; also ``width``/``height``, ``num_inference_steps``, ``guidance_scale``,
``negative_prompt``, ``seed``) and answers ``{"created", "data": [{"b64_json": PNG}]}``.
Pipelines that take no prompt (unconditional, e.g. DDPM) get the requested size by setting
their UNet's sample size, which a fully convolutional UNet accepts.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import inspect
import io
import json
import os
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from model_boss.backends._budget import cap_cuda_memory, format_fractions, parse_fractions

SINGLE_FILE_PIPELINES = {
    "sd15": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sd35": "StableDiffusion3Pipeline",
    "flux": "FluxPipeline",
}
MAX_SIDE = 4096


class BadRequest(ValueError):
    pass


def load_pipeline(model: Path, pipeline_type: str | None, device: str, dtype: str) -> Any:
    import diffusers
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and dtype in ("float16", "bfloat16"):
        print(f"{dtype} on CPU is not supported well; using float32", flush=True)
        dtype = "float32"
    torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
    if model.is_dir():
        pipe = diffusers.DiffusionPipeline.from_pretrained(  # type: ignore[no-untyped-call]
            model, torch_dtype=torch_dtype, local_files_only=True
        )
    else:
        if pipeline_type not in SINGLE_FILE_PIPELINES:
            raise ValueError(f"a single-file model needs pipeline_type ({model})")
        cls = getattr(diffusers, SINGLE_FILE_PIPELINES[pipeline_type])
        pipe = cls.from_single_file(model, torch_dtype=torch_dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _size(body: dict[str, Any]) -> tuple[int, int]:
    width, height = body.get("width"), body.get("height")
    if width is None or height is None:
        size = str(body.get("size") or "512x512")
        try:
            width, height = (int(part) for part in size.lower().split("x"))
        except ValueError:
            raise BadRequest(f"size must be WIDTHxHEIGHT, got {size!r}") from None
    if not (isinstance(width, int) and isinstance(height, int)):
        raise BadRequest("width and height must be integers")
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise BadRequest(f"size {width}x{height} is out of range")
    return width, height


def generate(pipe: Any, body: dict[str, Any], default_steps: int) -> list[bytes]:
    """Run the pipeline for one request; returns PNG bytes per image."""
    import torch

    if body.get("response_format", "b64_json") != "b64_json":
        raise BadRequest("only response_format b64_json is supported")
    width, height = _size(body)
    count = int(body.get("n") or 1)
    steps = int(body.get("num_inference_steps") or default_steps)
    generator = None
    if body.get("seed") is not None:
        generator = torch.Generator(device="cpu").manual_seed(int(body["seed"]))
    parameters = inspect.signature(pipe.__call__).parameters
    kwargs: dict[str, Any] = {"num_inference_steps": steps, "generator": generator}
    if "prompt" in parameters:
        kwargs |= {"prompt": body.get("prompt", ""), "num_images_per_prompt": count}
        kwargs |= {"height": height, "width": width}
        for key in ("negative_prompt", "guidance_scale"):
            if body.get(key) is not None and key in parameters:
                kwargs[key] = body[key]
    else:
        unet = pipe.unet
        factor = 2 ** (len(unet.config.block_out_channels) - 1)
        if width % factor or height % factor:
            raise BadRequest(f"width and height must be multiples of {factor} for this model")
        unet.register_to_config(sample_size=[height, width])
        kwargs["batch_size"] = count
    images = pipe(**kwargs).images
    pngs = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


class Worker:
    def __init__(self, default_steps: int) -> None:
        self.pipe: Any = None
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.default_steps = default_steps


def make_handler(worker: Worker) -> type[BaseHTTPRequestHandler]:
    key = os.environ.get("MODEL_BOSS_WORKER_KEY", "")  # the coordinator's per-start key

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            print(f"{self.address_string()} {format % args}", flush=True)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                ok = worker.ready.is_set()
                self._send(200 if ok else 503, {"status": "ok" if ok else "loading"})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if key and not hmac.compare_digest(
                self.headers.get("Authorization", "").encode(), f"Bearer {key}".encode()
            ):
                self._send(401, {"error": {"message": "invalid API key"}})
                return
            if self.path != "/v1/images/generations":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            if not worker.ready.is_set():
                self._send(503, {"error": {"message": "pipeline is loading"}})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with worker.lock:
                    pngs = generate(worker.pipe, body, worker.default_steps)
            except (BadRequest, ValueError, TypeError) as exc:
                self._send(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
                return
            except Exception as exc:
                traceback.print_exc()
                self._send(500, {"error": {"message": f"{type(exc).__name__}: {exc}"}})
                return
            data = [{"b64_json": base64.b64encode(png).decode()} for png in pngs]
            self._send(200, {"created": int(time.time()), "data": data})

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pipeline-type")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--default-steps", type=int, default=30)
    parser.add_argument("--memory-fractions", help="CUDA device=fraction,... from the lease")
    args = parser.parse_args(argv)
    worker = Worker(args.default_steps)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(worker))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"diffusers worker listening on 127.0.0.1:{args.port}, loading {args.model}", flush=True)
    try:
        capped = cap_cuda_memory(parse_fractions(args.memory_fractions))
        if capped:
            print(f"CUDA memory capped at {format_fractions(capped)} of each device", flush=True)
        worker.pipe = load_pipeline(args.model, args.pipeline_type, args.device, args.dtype)
    except Exception:
        traceback.print_exc()
        return 1
    worker.ready.set()
    print("diffusers worker ready", flush=True)
    threading.Event().wait()  # serve until SIGTERM (default action: exit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
