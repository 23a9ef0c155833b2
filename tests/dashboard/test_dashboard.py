"""The dashboard in a real browser against `model-boss serve` (a subprocess) with two
simulated models on one declared 10 GB GPU: what it shows, its load/unload buttons, that
caller-chosen text is shown as text, and the API-key prompt."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
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
            "simulated": {
                "load_s": 0.1,
                "tokens_per_s": 500,
                "output_tokens": 4,
                "vram_mb": 5500,  # what its footprint reports: the usage watch shows it
            },
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


def until(page: Any, check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Poll ``check`` (locator queries: they work under the page's strict CSP, where
    evaluating a string of JavaScript in the page, as wait_for_function does, is refused)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the page never got there"
        page.wait_for_timeout(100)


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
    # Measured by the usage watch (every 2 s) against the 6000 MB its lease holds.
    until(page, lambda: cells(page, '#models tr[data-model="sim"] td')[7] == "5500 / 6000 MiB")
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
    until(page, lambda: page.locator(".leases tbody tr").count() == 2)
    states = {m["id"]: m["state"] for m in httpx.get(f"{url}/v1/admin/models").json()["models"]}
    assert states["other"] == "ready"
    page.click('#models tr[data-model="other"] button[data-action="unload"]')
    page.wait_for_selector('#models tr[data-model="other"][data-state="unloaded"]', timeout=15_000)
    until(page, lambda: page.locator(".leases tbody tr").count() <= 1)
    assert page.locator("#error").is_hidden()
    page.close()


def test_a_model_loads_with_settings_typed_into_the_dashboard(browser: Any, url: str) -> None:
    page = browser.new_page()
    page.goto(f"{url}/dashboard")
    page.wait_for_selector("body[data-loaded=true]")
    row = '#models tr[data-model="other"]'
    page.click(f'{row} button[data-action="overrides"]')
    form = f"{row} form.overrides"
    page.wait_for_selector(form)
    assert sorted(page.locator(f"{form} input").evaluate_all("els => els.map(e => e.name)")) == [
        "load_s",
        "output_tokens",
        "tokens_per_s",
        "ttft_s",
    ]
    page.fill(f'{form} input[name="output_tokens"]', "-3")  # refused by the coordinator
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    assert "output_tokens" in page.locator("#error").inner_text()
    page.wait_for_timeout(2500)  # a refresh later the error is still there
    assert "output_tokens" in page.locator("#error").inner_text()
    page.fill(f'{form} input[name="output_tokens"]', "7")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector(f'{row}[data-state="ready"]', timeout=15_000)
    assert page.locator("#error").is_hidden()
    models = {m["id"]: m for m in httpx.get(f"{url}/v1/admin/models").json()["models"]}
    assert models["other"]["overrides"]["simulated"]["output_tokens"] == 7
    page.click(f'{row} button[data-action="unload"]')
    page.wait_for_selector(f'{row}[data-state="unloaded"]', timeout=15_000)
    page.click(f'{row} button[data-action="overrides"]')  # the form shows what is in force
    assert page.input_value(f'{form} input[name="output_tokens"]') == "7"
    page.close()


def test_each_pool_has_a_chart_of_its_recent_memory(browser: Any, url: str) -> None:
    page = browser.new_page()
    page.goto(f"{url}/dashboard")
    line = page.locator(".pool svg.history-chart polyline").first
    until(page, lambda: len((line.get_attribute("points") or "").split()) >= 2)
    assert "peak" in page.locator(".pool div.history span").first.inner_text()
    label = page.locator(".pool svg.history-chart").first.get_attribute("aria-label")
    assert label is not None
    assert "peak" in label
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
    until(page, lambda: "onerror" in page.locator("#clients tbody").inner_text())
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


def test_a_key_without_admin_rights_sees_every_panel_it_may(browser: Any, tmp_path: Path) -> None:
    proc, base = coordinator(tmp_path, MODEL_BOSS_API_KEYS="user-key", MODEL_BOSS_ADMIN_KEYS="adm")
    try:
        body = {
            "model": "sim",
            "messages": [{"role": "user", "content": "hi"}],
            "x_client_id": "bob",
        }
        headers = {"Authorization": "Bearer user-key"}
        r = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        page = browser.new_page()
        page.goto(f"{base}/dashboard")
        page.wait_for_selector("#error:not([hidden])")
        page.fill("#api-key", "user-key")
        page.click("#key-form button")
        page.wait_for_selector("body[data-loaded=true]")
        # The admin API refuses this key; the other panels do not fail with it.
        page.wait_for_selector('#models tr[data-model="sim"][data-state="ready"]')
        assert sorted(cells(page, "#models tbody tr td:first-child")) == ["other", "sim"]
        assert cells(page, '#models tr[data-model="sim"] td')[:3] == ["sim", "simulated", "ready"]
        assert page.locator("#models button").count() == 0
        assert "an admin key shows" in page.locator("#models-note").inner_text()
        assert page.locator(".pool").count() == 1
        assert "6000 MB leased" in page.locator(".pool h3").first.inner_text()
        assert cells(page, '#clients tr[data-client="bob"] td')[:2] == ["bob", "1"]
        assert page.locator("#pools-note").is_hidden()
        assert page.locator("#clients-note").is_hidden()
        assert page.locator("#error").is_hidden()
        assert "2 models" in page.locator("#summary").inner_text()
        page.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
