"""A real browser for the dashboard tests: Debian's Chromium driven by Playwright.

``make setup-browser`` (part of ``make check``) installs Chromium with apt-get when it is
missing; ``MODEL_BOSS_CHROMIUM`` points at another Chromium. A missing browser fails the
tests loudly; they are never skipped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def chromium_path() -> str:
    explicit = os.environ.get("MODEL_BOSS_CHROMIUM")
    found = explicit or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not Path(found).exists():
        pytest.fail("no Chromium found -- run `make setup-browser` (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()
