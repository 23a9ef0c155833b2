#!/usr/bin/env bash
# The real browser the dashboard tests drive: Debian's Chromium (Playwright drives it; no
# browser is downloaded from anywhere but the distribution's packages).
# A no-op when Chromium is already there (or MODEL_BOSS_CHROMIUM points at one).
set -euo pipefail

if [[ -n "${MODEL_BOSS_CHROMIUM:-}" && -x "${MODEL_BOSS_CHROMIUM}" ]]; then
    exit 0
fi
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Chromium (apt-get install chromium) for the dashboard tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
    exit 0
fi
echo "The dashboard tests need Chromium: install it (Debian/Ubuntu: sudo apt-get install chromium)" >&2
echo "or set MODEL_BOSS_CHROMIUM to a Chromium executable." >&2
exit 1
