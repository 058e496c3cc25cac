# Fingerspell: every target sets itself up on a fresh machine (Python 3.11 + pip).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export YOLO_OFFLINE ?= 1
export YOLO_AUTOINSTALL := False
export NO_ALBUMENTATIONS_UPDATE := 1
export DO_NOT_TRACK := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# Our flows run in-process; Prefect's ephemeral API needs no server process.
export PREFECT_SERVER_ALLOW_EPHEMERAL_MODE ?= true
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
# If the shared dataset sits beside the checkout, use it (no Roboflow key needed).
SHARED_DATASET := $(abspath ../shared/datasets/asl-letters)
ifneq ($(wildcard $(SHARED_DATASET)/data.yaml),)
export FINGERSPELL_DATASET ?= $(SHARED_DATASET)
endif

.PHONY: setup demo test lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# torch comes from local disk here (pip is capped to these releases there).
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/pip check
	touch $@

demo: setup
	$(BIN)/python -m flows.pipeline --profile demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python benchmarks/data.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/inference.py

clean:
	rm -rf .fingerspell .pytest_cache benchmarks/results
