"""The dashboard in a real browser against `model-boss serve` (a subprocess) with two
simulated models on one declared 10 GB GPU: what it shows, its load/unload buttons, that
caller-chosen text is shown as text, and the API-key prompt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import start_coordinator

pytestmark = pytest.mark.slow

MANIFEST = {
    "models": {
        "sim": {
            "backend": "simulated",
            "vram_mb": 6000,
            "simulated": {"load_s": 0.1, "tokens_per_s": 500, "output_tokens": 4},
        },
        "other": {"backend": "simulated", "vram_mb": 3000, "simulated": {"load_s": 0.1}},
    }
}
SCRIPT = "<img src=x onerror=\"document.title='pwned'\">"


def coordinator(tmp: Path, **env: str) -> tuple[Any, str]:
    manifest = tmp / "manifest.yaml"
    manifest.write_text(yaml.safe_dump(MANIFEST))
    return start_coordinator(
        tmp / "state", "--settings", str(manifest), env={"MODEL_BOSS_DEVICES": "10000", **env}
    )


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, base = coordinator(tmp_path_factory.mktemp("dash"))
    try:
        yield base
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def chat(url: str, model: str, client: str, priority: str = "normal", **extra: str) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "x_client_id": client,
        "x_priority": priority,
        **extra,
    }
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text


def cells(page: Any, selector: str) -> list[str]:
    return [str(t).strip() for t in page.locator(selector).all_inner_texts()]


def test_the_dashboard_shows_memory_models_and_clients(browser: Any, url: str) -> None:
    chat(url, "sim", "alice", "high")
    page = browser.new_page()
    page.goto(f"{url}/dashboard")
    page.wait_for_selector("body[data-loaded=true]")
    page.wait_for_selector('#models tr[data-model="sim"][data-state="ready"]')
    assert cells(page, '#models tr[data-model="sim"] td')[:3] == ["sim", "simulated", "ready"]
    assert cells(page, '#models tr[data-model="other"] td')[2] == "unloaded"
    pool = page.locator(".pool").first
    assert "6000 MB leased" in pool.locator("h3").inner_text()
    lease = cells(page, ".leases tbody tr td")
    assert lease[1:4] == ["sim", "6000", "high (5)"]
    assert lease[0].startswith("coordinator@")
    assert cells(page, '#clients tr[data-client="alice"] td')[:2] == ["alice", "1"]
    assert "2 models" in page.locator("#summary").inner_text()
    page.close()


def test_load_and_unload_buttons_drive_the_coordinator(browser: Any, url: str) -> None:
    page = browser.new_page()
    page.goto(f"{url}/dashboard")
    page.wait_for_selector("body[data-loaded=true]")
    page.click('#models tr[data-model="other"] button[data-action="load"]')
    page.wait_for_selector('#models tr[data-model="other"][data-state="ready"]', timeout=15_000)
    page.wait_for_function("document.querySelectorAll('.leases tbody tr').length === 2")
    states = {m["id"]: m["state"] for m in httpx.get(f"{url}/v1/admin/models").json()["models"]}
    assert states["other"] == "ready"
    page.click('#models tr[data-model="other"] button[data-action="unload"]')
    page.wait_for_selector('#models tr[data-model="other"][data-state="unloaded"]', timeout=15_000)
    page.wait_for_function("document.querySelectorAll('.leases tbody tr').length <= 1")
    assert page.locator("#error").is_hidden()
    page.close()


def test_text_chosen_by_callers_is_shown_as_text_never_run(browser: Any, url: str) -> None:
    chat(url, "sim", SCRIPT)
    page = browser.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(str(dialog.message))
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(f"{url}/dashboard")
    page.wait_for_selector("body[data-loaded=true]")
    page.wait_for_function("document.querySelector('#clients tbody').innerText.includes('onerror')")
    assert SCRIPT in cells(page, "#clients tbody td")
    assert page.locator("#clients img").count() == 0
    assert page.title() == "model-boss"
    assert dialogs == []
    page.close()


def test_with_keys_the_dashboard_asks_for_one_and_then_shows_everything(
    browser: Any, tmp_path: Path
) -> None:
    proc, base = coordinator(tmp_path, MODEL_BOSS_API_KEYS="user-key", MODEL_BOSS_ADMIN_KEYS="adm")
    try:
        page = browser.new_page()
        page.goto(f"{base}/dashboard")
        page.wait_for_selector("#error:not([hidden])")
        assert "enter an API key" in page.locator("#error").inner_text()
        page.fill("#api-key", "adm")
        page.click("#key-form button")
        page.wait_for_selector("body[data-loaded=true]")
        assert sorted(cells(page, "#models tbody tr td:first-child")) == ["other", "sim"]
        assert page.locator("#error").is_hidden()
        page.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
