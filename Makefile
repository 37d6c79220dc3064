# Two commands on a fresh clone:
#   make repro   # set up .venv, then rebuild the pipeline (dvc repro) on the default dataset
#   make test    # set up .venv, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra pip arguments for torch and torchvision (constraints.txt pins their version, the
# platform picks the build), e.g. a CPU-only build elsewhere:
#   make setup TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'
TORCH_PIP_ARGS ?=
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PYTHONUNBUFFERED := 1
# (no PREFECT_HOME here: a configured Prefect server or profile is the user's; without one the
# flows keep their temporary server's state in .state/prefect, see pipelines/prefect_env.py)

.PHONY: setup repro test test-fast lint lock check-lock dag ui clean-venv
setup: $(STAMP)

# Every package from the hashed lock (requirements.lock, without dependencies: it lists them
# all), then torch and torchvision by version (constraints.txt: their dependencies are in the
# lock already, except a CUDA build's own nvidia-* libraries), then this project.
$(STAMP): pyproject.toml constraints.txt requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python .ci/lock.py check
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install -q $(TORCH_PIP_ARGS) -c constraints.txt torch torchvision
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

repro: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

test: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

# Re-resolve requirements.lock from pyproject.toml and constraints.txt (needs the package index)
lock: $(STAMP)
	$(BIN)/python .ci/lock.py update

check-lock:
	$(PYTHON) .ci/lock.py check

dag: $(STAMP)
	$(BIN)/dvc dag

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db --default-artifact-root ./mlflow/artifacts

clean-venv:
	rm -rf $(VENV)
