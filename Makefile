# Two commands matter (README quick start): `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch/torchvision pair that installs offline on the project machines (reference/environment.md, Q1 path B).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.dfbench-installed

.PHONY: install demo test test-slow lint bench demo-weights clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PINS) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dfbench run --detector effb2 --suite video-ops --frames 8 --out runs/demo

lint: $(STAMP)
	$(BIN)/ruff check dfbench tests benchmarks
	$(BIN)/mypy dfbench

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest --doctest-modules -m "not slow" --durations=30 dfbench tests

# The long end-to-end tests (README "Install"): random kills, every adapter, long suite and training recipe, the
# notebook, the report rendered in headless Chromium (Debian's chromium package), the installed wheel, the fuzz test,
# every command on relative folders and unwritable outputs, the Capsule-Forensics parity test, Ctrl-C and SIGTERM
# stops, batch padding, the whole demo set's format audit, the Ray backend on a two-node local Ray cluster.
test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -rP -m slow tests

# Reproduces dfbench/detectors/weights/effb2_demo.pt (the recipe of `dfbench train`, on the demo train split).
demo-weights: $(STAMP)
	$(BIN)/dfbench train --detector effb2 --recipe trueface-effb2 --dataset demo --frames 12 --val-fraction 0.2 --save-dtype fp16 \
		--out dfbench/detectors/weights/effb2_demo.pt

# The speed benchmark (README "Speed"); e.g. make bench BENCH_ARGS="--videos 4 --seconds 3 --scaling".
bench: $(STAMP)
	$(BIN)/python benchmarks/stages.py $(BENCH_ARGS)

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
