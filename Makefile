# One entry point for developers and CI alike: install, run, check, test, bench.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
PIPELINE ?= alpha.full

.PHONY: run test check bench browser install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev]'
	# the real Helm library renders the chart in tests; its wheel says Python>=3.12 but runs on 3.11
	$(PIP) install --ignore-requires-python 'helm_sdkpy==0.1.32'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Set up and run the shipped quant pipeline locally.
run: $(VENV)/.installed
	$(BIN)/runner run $(PIPELINE)

## Lint, type-check and check the import layers.
check: $(VENV)/.installed-dev
	$(BIN)/ruff check runner tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

## Headless Chromium for the report's browser test (skipped, with the reason, if it cannot install).
browser:
	./scripts/ensure-browser.sh

## Set up and run the whole test suite (what CI runs).
test: check browser
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/fork.py
	$(BIN)/python benchmarks/checkpoint.py
	$(BIN)/python benchmarks/tracing.py
	$(BIN)/python benchmarks/parallel.py
	$(BIN)/python benchmarks/end_to_end.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
