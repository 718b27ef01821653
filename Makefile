# Two commands for users: `make demo` (the main job on the bundled sample) and `make test` (the test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0

.PHONY: demo test test-slow bench bench-env install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# CPU build of torch first, pinned, so nothing below pulls the multi-GB CUDA build.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/diffux2ct demo --out demo-output

test: install-test
	$(BIN)/python -m pytest

test-slow: install-test
	$(BIN)/python -m pytest -m slow

# Benchmarks (not part of the test suite). diffdrr, the projector we compare with, lives in its own environment.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BENCH_VENV)/bin/pip install --quiet --no-deps diffdrr==0.5.1
	$(BENCH_VENV)/bin/pip install --quiet torchio fastcore einops kornia scipy pandas nibabel SimpleITK numpy
	touch $@

bench-env: $(BENCH_VENV)/.installed

bench: install bench-env
	$(BIN)/python Testing/benchmarks/performance.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) demo-output .pytest_cache
