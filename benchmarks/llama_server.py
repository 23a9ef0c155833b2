"""Time the real llama-server backend with the demo model: start-up, first token, tokens/s.

Run: ``.venv/bin/python benchmarks/llama_server.py`` (needs ``make setup``). Each round
starts a fresh llama-server, streams one chat answer of 128 tokens and stops it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time

from model_boss.backends import create_backend, fetch_demo_model

ROUNDS = 5
TOKENS = 128


async def one_round(round_index: int, log_dir: str) -> dict[str, float]:
    entry = {
        "path": str(fetch_demo_model()),
        "context_size": 2048,
        "llama_server": {"parallel": 1, "threads": 2},
    }
    backend = create_backend("llama_server", "smollm2", entry, log_dir=log_dir)
    started = time.monotonic()
    await backend.start()
    startup_s = time.monotonic() - started
    try:
        prompt = f"Round {round_index}: tell me a story about a lighthouse keeper."
        body = {"messages": [{"role": "user", "content": prompt}]}
        sent = time.monotonic()
        first: float | None = None
        count = 0
        async for event in backend.chat_stream({**body, "max_tokens": TOKENS, "ignore_eos": True}):
            if not event.startswith(b"data: {"):
                continue
            choices = json.loads(event[6:])["choices"]
            if choices and choices[0]["delta"].get("content"):
                count += 1
                first = time.monotonic() if first is None else first
        done = time.monotonic()
    finally:
        await backend.stop()
    assert first is not None
    return {
        "startup_s": startup_s,
        "first_token_ms": (first - sent) * 1000,
        "tokens_per_s": (count - 1) / (done - first),
    }


async def main() -> None:
    with tempfile.TemporaryDirectory() as log_dir:
        rounds = [await one_round(i, log_dir) for i in range(ROUNDS)]
    print(f"llama-server + SmolLM2-135M Q4_1, {ROUNDS} rounds, {TOKENS} tokens, median (min-max)")
    for metric in rounds[0]:
        values = [r[metric] for r in rounds]
        print(
            f"{metric:<16}{statistics.median(values):>9.2f}  ({min(values):.2f}-{max(values):.2f})"
        )


if __name__ == "__main__":
    asyncio.run(main())
