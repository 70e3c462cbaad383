# Everything a person or CI runs. The venv is created on first use from the pinned requirements.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STUBS := planner_api/v1/planner_pb2.py

.PHONY: venv venv-dev proto serve test lint pytest bench clean

venv: $(VENV)/.runtime

venv-dev: $(VENV)/.dev

$(VENV)/.runtime: requirements/runtime.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/runtime.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
	  || $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements/dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	touch $@

# The stubs are checked in; regenerate only when the .proto is newer (needs grpcio-tools).
proto: $(STUBS)

$(STUBS): $(wildcard proto/planner/v1/*.proto) tools/genproto.py
	$(MAKE) venv-dev
	$(BIN)/python tools/genproto.py

serve: venv proto
	$(BIN)/planner-server

test: venv-dev proto lint pytest

lint: venv-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: venv-dev
	$(BIN)/pytest

# BENCH_ARGS="--only accuracy,scale" runs just those sections (see bench/run.py).
bench: venv-dev proto
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
