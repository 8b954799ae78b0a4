# One entry point for developers and CI alike: install, run, check, test, bench.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
PIPELINE ?= alpha.full

.PHONY: run test check bench browser install install-dev clean lock container-e2e

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# An editable install leaves the package's bytecode to be written on first import, which
# PYTHONDONTWRITEBYTECODE (set in many shells and images) forbids: every start would
# compile runner's modules again (about 0.1 s). Compiled here once, as pip does for a wheel.
COMPILE := $(BIN)/python -m compileall -q runner

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	$(COMPILE)
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev]'
	# the real Helm library renders the chart in tests; its wheel says Python>=3.12 but runs on 3.11
	$(PIP) install --ignore-requires-python 'helm_sdkpy==0.1.32'
	$(COMPILE)
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Set up and run the shipped quant pipeline locally.
run: $(VENV)/.installed
	$(BIN)/runner run $(PIPELINE)
	@echo "runner is in $(BIN): 'source $(BIN)/activate' puts it on your PATH (or call $(BIN)/runner)"

## Lint, type-check and check the import layers.
check: $(VENV)/.installed-dev
	$(BIN)/ruff check runner tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

## Headless Chromium for the report's browser tests and tmux for the terminal test (skipped,
## with the reason, if they cannot install).
browser:
	./scripts/ensure-browser.sh

## Set up and run the whole test suite (what CI runs), then the container check: the
## image built and the pods we generate run in a private Docker engine (root, Debian).
## The tests are shared out among two pytest-xdist workers (CI's machine has two cores),
## a test module (and every module that uses the session's Ray cluster) on one worker:
## tests/conftest.py. PYTEST_ARGS= runs them in one process; PYTEST_ARGS='-n 4 --dist
## loadfile' on four workers.
PYTEST_ARGS ?= -n 2 --dist loadfile
test: check browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	./scripts/container-e2e.sh

## Every benchmark (benchmarks/table.py lists them), then one table: each issue target,
## its reference measured in the same run, met or not. Each script's JSON: .bench-results/
## The bytecode is compiled first: what is measured is runner as installed, not edited since.
bench: $(VENV)/.installed-dev
	$(COMPILE)
	$(BIN)/python benchmarks/table.py

## Re-pin the image's dependencies (docker/requirements/*.lock, with hashes) for Linux
## x86_64 and CPython 3.11: after a change to pyproject.toml's dependencies, or to take
## updates. Ray's version is the cluster's: RayClusterSpec.ray_version (runner/k8s/builders.py).
LOCKS := docker/requirements
LOCK  := $(BIN)/uv pip compile --quiet --generate-hashes --no-annotate \
	--python-version 3.11 --python-platform x86_64-manylinux_2_36 --only-binary :all: \
	--custom-compile-command 'make lock'
lock: SHELL := /bin/bash
lock: .SHELLFLAGS := -euo pipefail -c
lock: $(VENV)/.installed-dev
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
		| $(LOCK) - -o $(LOCKS)/build.lock
	$(BIN)/python -c 'from runner.k8s.builders import RayClusterSpec; print(f"ray[default]=={RayClusterSpec.ray_version}")' \
		| $(LOCK) pyproject.toml - --extra ray --extra k8s --extra s3 --extra gcs -o $(LOCKS)/ray.lock
	# the Job image: the same versions as the Ray one, without Ray (nor GCS: at most 700 MB)
	$(LOCK) pyproject.toml --extra k8s --extra s3 -c $(LOCKS)/ray.lock -o $(LOCKS)/job.lock

## Build the base and the image with a private Docker engine and run them (root, Debian).
container-e2e:
	./scripts/container-e2e.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
