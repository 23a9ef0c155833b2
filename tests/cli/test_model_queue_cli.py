"""``model-boss model list|load|unload`` and ``model-boss queue status`` against a
coordinator served on a real port from a background thread (the CLI blocks its own)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from model_boss.cli import main
from model_boss.cli._model import parse_override
from model_boss.cli._queue import CLIENT_HEADERS
from model_boss.client import InferenceClient, SyncInferenceClient
from model_boss.testing import free_port
from tests.api.conftest import sim_model
from tests.client.conftest import ThreadedServer

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODEL_BOSS_URL", "COORDINATOR_URL", "MODEL_BOSS_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def coordinator() -> Iterator[ThreadedServer]:
    with ThreadedServer() as srv:
        yield srv


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_model_list_table_and_json(
    coordinator: ThreadedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with SyncInferenceClient(coordinator.url) as client:
        client.chat("a", HI)
    code, out, _ = run(capsys, "model", "list", "--url", coordinator.url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"coordinator: {coordinator.url}"
    assert lines[1].split() == [
        "id",
        "backend",
        "state",
        "replicas",
        "waiting",
        "running",
        "footprint_mb",
    ]
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    assert rows["a"] == ["a", "simulated", "ready", "1/1", "0", "0", "4000"]
    assert rows["b"] == ["b", "simulated", "unloaded", "0/1", "0", "0", "4000"]
    assert set(rows) == {"a", "b", "vision"}
    data = run_json(capsys, "model", "list", "--url", coordinator.url)
    assert data["url"] == coordinator.url
    assert {m["id"]: m["state"] for m in data["models"]} == {
        "a": "ready",
        "b": "unloaded",
        "vision": "unloaded",
    }


def test_model_load_with_overrides_then_unload(
    coordinator: ThreadedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ["--url", coordinator.url]
    code, out, err = run(
        capsys, "model", "load", "b", "--set", "tokens_per_s=500", "--set", "output_tokens=3", *url
    )
    assert code == 0, err
    assert out.strip() == "loaded b (output_tokens=3, tokens_per_s=500): ready"
    (b,) = [m for m in run_json(capsys, "model", "list", *url)["models"] if m["id"] == "b"]
    assert b["state"] == "ready"
    assert b["overrides"]["simulated"] == {
        "load_s": 0.02,
        "tokens_per_s": 500,
        "output_tokens": 3,
    }
    with SyncInferenceClient(coordinator.url) as client:
        usage = client.chat("b", HI)["usage"]
    assert usage["completion_tokens"] == 3  # the live override is what b now runs with
    assert run_json(capsys, "model", "unload", "b", *url)["id"] == "b"
    deadline = time.monotonic() + 5
    while True:
        models = run_json(capsys, "model", "list", *url)["models"]
        if {m["id"]: m["state"] for m in models}["b"] == "unloaded":
            break
        assert time.monotonic() < deadline, "b never unloaded"
        time.sleep(0.02)


def test_model_load_no_wait_and_unload_text(
    coordinator: ThreadedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "model", "load", "vision", "--no-wait", "--url", coordinator.url)
    assert code == 0
    assert out.startswith("asked to load vision: ")
    with SyncInferenceClient(coordinator.url) as client:
        deadline = time.monotonic() + 5
        while client.model("vision")["state"] != "ready":
            assert time.monotonic() < deadline, "vision never loaded"
            time.sleep(0.02)
    code, out, _ = run(capsys, "model", "unload", "vision", "--url", coordinator.url)
    assert code == 0
    assert out.startswith("unloading vision: ")


def test_model_errors_exit_1_with_the_reason(
    coordinator: ThreadedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "model", "load", "nope", "--url", coordinator.url)
    assert (code, out) == (1, "")
    assert "ModelNotFound" in err
    assert "nope" in err
    code, _, err = run(
        capsys, "model", "load", "a", "--set", "binary=/bin/sh", "--url", coordinator.url
    )
    assert code == 1
    assert "InvalidRequest" in err
    assert "binary" in err
    code, _, err = run(capsys, "model", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert "CoordinatorUnavailable" in err


def test_set_needs_key_equals_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_override("context_size=8192") == ("context_size", 8192)
    assert parse_override("kv_cache_dtype=fp8") == ("kv_cache_dtype", "fp8")
    assert parse_override("gpu_memory_utilization=0.85") == ("gpu_memory_utilization", 0.85)
    assert parse_override("flag=true") == ("flag", True)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_override("no-equals-sign")
    with pytest.raises(SystemExit) as info:
        main(["model", "load", "a", "--set", "=1"])
    assert info.value.code == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_url_and_key_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with ThreadedServer(api_keys=["user-key"], admin_keys=["admin-key"]) as srv:
        monkeypatch.setenv("MODEL_BOSS_URL", srv.url)
        code, _, err = run(capsys, "model", "list")
        assert code == 1
        assert "AuthenticationFailed" in err
        code, _, err = run(capsys, "model", "list", "--api-key", "user-key")
        assert code == 1
        assert "admin" in err
        assert run_json(capsys, "queue", "status", "--api-key", "user-key")["depth"] == 0
        monkeypatch.setenv("MODEL_BOSS_API_KEY", "admin-key")
        models = run_json(capsys, "model", "list")["models"]
        assert sorted(m["id"] for m in models) == ["a", "b", "vision"]


async def test_queue_status_shows_waiting_and_running_requests(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A second request from a client with a long x_cooldown waits; a chat with ``slow``
    # (8 tokens at 1 token/s) runs. Both are cancelled at the end.
    slow = sim_model(
        "slow", entry={"simulated": {"load_s": 0.02, "tokens_per_s": 1, "output_tokens": 8}}
    )
    with ThreadedServer([sim_model("a"), slow]) as srv:
        async with InferenceClient(srv.url) as client:
            await client.chat("a", HI, x_client_id="held", x_cooldown=600)
            held = asyncio.create_task(
                client.chat("a", HI, x_client_id="held", x_cooldown=600, x_priority="low")
            )
            busy = asyncio.create_task(
                client.chat("slow", HI, x_client_id="busy", x_priority="high")
            )
            try:
                deadline = time.monotonic() + 5
                while True:
                    queue = await client.queue()
                    if queue["depth"] == 1 and len(queue["running"]) == 1:
                        break
                    assert time.monotonic() < deadline, f"never one waiting, one running: {queue}"
                    await asyncio.sleep(0.01)
                data = await _cli_json(capsys, "queue", "status", "--url", srv.url)
                assert data["depth"] == 1
                (waiting,) = data["waiting"]
                assert (waiting["position"], waiting["model"], waiting["client"]) == (
                    1,
                    "a",
                    "held",
                )
                assert waiting["priority"] == 20
                (running,) = data["running"]
                assert (running["model"], running["client"], running["priority"]) == (
                    "slow",
                    "busy",
                    5,
                )
                code = await asyncio.to_thread(main, ["queue", "status", "--url", srv.url])
                assert code == 0
                out = capsys.readouterr().out.splitlines()
                assert out[1] == "waiting: 1  running: 1"
                assert out[3].split() == ["position", "model", "priority", "client", "age_s"]
                assert out[5].split()[:4] == ["1", "a", "low", "held"]
                assert out[7].split() == ["model", "priority", "client", "running_s"]
                assert out[9].split()[:3] == ["slow", "high", "busy"]
            finally:
                held.cancel()
                busy.cancel()
                await asyncio.gather(held, busy, return_exceptions=True)
            deadline = time.monotonic() + 5
            while (queue := await client.queue())["depth"] or queue["running"]:
                assert time.monotonic() < deadline, f"cancelled requests stayed: {queue}"
                await asyncio.sleep(0.02)
        code = await asyncio.to_thread(main, ["queue", "status", "--url", srv.url])
        assert code == 0
        assert capsys.readouterr().out.splitlines()[1:] == ["waiting: 0  running: 0"]
        argv = ["queue", "status", "--clients", "--url", srv.url]
        assert await asyncio.to_thread(main, argv) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[3].split() == list(CLIENT_HEADERS)
        rows = {line.split()[0]: line.split() for line in out[5:]}
        assert rows["held"] == ["held", "2", "0", "0", "1", "low", "a:2"]
        busy_row = rows["busy"]
        assert (busy_row[1], busy_row[5], busy_row[6]) == ("1", "high", "slow:1")
        clients = (await _cli_json(capsys, *argv))["clients"]
        assert sorted(c["client_id"] for c in clients) == ["busy", "held"]


async def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = await asyncio.to_thread(main, [*argv, "--json"])
    assert code == 0
    return json.loads(capsys.readouterr().out)
