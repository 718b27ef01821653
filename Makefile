# Two commands for users: `make demo` (the main job on the bundled sample) and `make test` (the test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0

.PHONY: demo test test-slow install install-test clean

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

clean:
	rm -rf $(VENV) demo-output .pytest_cache
