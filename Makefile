# Two entry points (README): `make repro` sets up and runs the main job, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch keeps the install small; override (e.g. TORCH=torch) for a CUDA machine.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup repro test bench clean

$(BIN)/llvbench: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[pipeline,dev]"
	touch $(BIN)/llvbench

setup: $(BIN)/llvbench

repro: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/bench_tasks.py

clean:
	rm -rf $(VENV) .pytest_cache
