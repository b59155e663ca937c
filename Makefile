# The two front doors: `make run` (the main job on the embedded default) and
# `make test` (lint, format check, type check and the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
EXAMPLE := examples/mcp-imagegen-border
# Node 22, the MCP conformance suite and the Inspector for the HTTP tests.
NODE_TOOLS := .cache/node22
# The torch venv that runs the example diffusers predictor (tests/diffusers).
DIFFUSERS_VENV := .cache/diffusers-venv
PROMPT ?= a lighthouse on a cliff at dusk, watercolor

.PHONY: run test lint typecheck pytest bench clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(EXAMPLE)/pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[test,all]' -e $(EXAMPLE)
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/mcp-imagegen generate "$(PROMPT)" --width 512 --height 512

lint: $(VENV)/.installed-test
	$(BIN)/ruff check core plugins tests examples bench
	$(BIN)/ruff format --check core plugins tests examples bench

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# Installed once (the stamp is written only after a successful npm install, and
# only where npm exists: without npm the Node tests skip and say so).
$(NODE_TOOLS)/.installed: tests/node/install.sh
	sh tests/node/install.sh $(NODE_TOOLS)

# Debian's chromium for the MCP App browser test (tests/app); a no-op once
# /usr/bin/chromium exists, and without apt or root the test skips and says so.
chromium:
	sh tests/app/install_chromium.sh

# Rebuilt when the pins change; the stamp is written only after a full install.
$(DIFFUSERS_VENV)/.installed: tests/diffusers/requirements.txt tests/diffusers/install.sh
	PYTHON=$(PYTHON) sh tests/diffusers/install.sh $(DIFFUSERS_VENV)

pytest: $(VENV)/.installed-test $(NODE_TOOLS)/.installed $(DIFFUSERS_VENV)/.installed chromium
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(VENV)/.installed-test
	for script in startup generate stages kserve_client storage postprocess memory streamable_http tasks; do \
		echo "== bench/$$script.py"; $(BIN)/python bench/$$script.py || exit 1; \
	done

clean:
	rm -rf $(VENV) $(NODE_TOOLS) $(DIFFUSERS_VENV) .cache/tiny-sd .pytest_cache .mypy_cache .ruff_cache
