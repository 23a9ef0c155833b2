# One entry point for users, developers and CI.
#   make check   set everything up on a fresh machine (with Chromium for the dashboard tests),
#                then lint, type-check and run every test
#   make quick   the fast loop: no slow (real-process) tests
#   make serve   set up, then run the coordinator on the embedded default (port 8210)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: check setup setup-browser lint typecheck test quick bench serve

check: setup setup-browser lint typecheck test

setup: $(VENV)/.installed
	PYTHON=$(BIN)/python bash scripts/build-llama-server.sh
	$(BIN)/python -m model_boss.backends.demo_model

setup-browser:
	bash scripts/install-browser.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,diffusers,hf,onnx]'
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

test: setup setup-browser
	$(BIN)/pytest

quick: setup
	$(BIN)/pytest -m "not slow" -q

bench: setup
	$(BIN)/python benchmarks/leases.py

serve: setup
	$(BIN)/model-boss serve
