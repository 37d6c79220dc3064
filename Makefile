# Two commands on a fresh clone:
#   make repro   # set up .venv, then rebuild the pipeline (dvc repro) on the default dataset
#   make test    # set up .venv, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
export PREFECT_HOME := $(CURDIR)/.state/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PYTHONUNBUFFERED := 1

.PHONY: setup repro test test-fast dag ui clean-venv
setup: $(STAMP)

# torch first, from the pin (see constraints.txt), then the project with its extras.
# animal-mnist declares tensorflow as a dependency it does not need: --no-deps.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[pipeline,dev]'
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt torchvision==0.28.0 animal-mnist==0.4
	touch $(STAMP)

repro: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

test: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -m "not slow"

dag: $(STAMP)
	$(BIN)/dvc dag

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db --default-artifact-root ./mlflow/artifacts

clean-venv:
	rm -rf $(VENV)
