# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU-only machines pin the CPU build of torch; where nvidia-smi exists, pip takes the CUDA build.
CONSTRAINTS ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,constraints/cpu.txt)
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
STAMP := $(VENV)/.installed

export RAY_USAGE_STATS_ENABLED ?= 0
export MLFLOW_DISABLE_TELEMETRY ?= true

.PHONY: install demo serve test test-unit lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_CONSTRAINTS) -e '.[dev]'
	$(BIN)/python -m trainers.prebuild
	touch $(STAMP)

# The demo trains the digits config, runs a small sweep of it and crowns a champion, then serves
# the champion on Ray Serve, sends it a few authenticated requests and removes the deployment.
DEMO_SWEEP := --num-samples 4 --set optim.epochs=6

demo: install
	$(BIN)/redblue train configs/digits.yaml
	$(BIN)/redblue sweep configs/digits.yaml $(DEMO_SWEEP)
	$(BIN)/redblue deploy models:/digits@champion --config configs/digits.yaml --check

serve: install  # the champion make demo crowned, in the foreground until Ctrl-C
	$(BIN)/redblue deploy models:/digits@champion --config configs/digits.yaml

test: install
	$(BIN)/python -m pytest --durations=60

test-unit: install
	$(BIN)/python -m pytest tests/unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/train_overhead.py
	$(BIN)/python benchmarks/start_up.py
	$(BIN)/python benchmarks/core_use.py
	$(BIN)/python benchmarks/sweep_overhead.py
	$(BIN)/python benchmarks/serve_bench.py --ingress proxy haproxy --runtime torch onnxruntime int8
	$(BIN)/python benchmarks/predict_throughput.py
	$(BIN)/python benchmarks/compression.py

clean:
	rm -rf $(VENV) ray_results mlruns mlartifacts mlflow.db logs .pytest_cache
