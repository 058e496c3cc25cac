# Fingerspell: every target sets itself up on a fresh machine (Python 3.11 + pip).
SHELL := /bin/bash
comma := ,
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Which extras of pyproject.toml `make setup` installs: dev is all of them (app, gcp, the test
# tools), as `make demo` and `make test` need. EXTRAS=app (the web app), EXTRAS=gcp (Vertex AI,
# gs://) or EXTRAS= (the core: every flow) set up a slimmer .venv; start it afresh
# (rm -r .venv), as pip never removes what an earlier set-up installed.
EXTRAS ?= dev
STAMP := $(VENV)/.installed-$(or $(subst $(comma),-,$(EXTRAS)),core)
export YOLO_OFFLINE ?= 1
export YOLO_AUTOINSTALL := False
export NO_ALBUMENTATIONS_UPDATE := 1
export DO_NOT_TRACK := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION ?= false
# Our flows run in-process; Prefect's ephemeral API needs no server process.
export PREFECT_SERVER_ALLOW_EPHEMERAL_MODE ?= true
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
# If the shared dataset sits beside the checkout, use it (no Roboflow key needed).
SHARED_DATASET := $(abspath ../shared/datasets/asl-letters)
ifneq ($(wildcard $(SHARED_DATASET)/data.yaml),)
export FINGERSPELL_DATASET ?= $(SHARED_DATASET)
endif
# Pretrained weights beside the checkout stand in for downloads (an offline machine trains
# exactly what an online one does); without them they are downloaded by name.
SHARED_WEIGHTS := $(abspath ../shared/weights)
ifneq ($(wildcard $(SHARED_WEIGHTS)/*.pt),)
export FINGERSPELL_WEIGHTS_DIR ?= $(SHARED_WEIGHTS)
endif

.PHONY: setup demo app test test-fast test-py check-extras lint format bench serve team-up team-down clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# torch comes from local disk here (pip is capped to these releases there).
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c constraints.txt -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	$(BIN)/pip check
	rm -f $(VENV)/.installed*
	touch $@

demo: setup
	$(BIN)/python -m flows.pipeline --profile demo
	@echo "Starting the web app (its URL follows, usually http://127.0.0.1:8501; Ctrl-C stops it)"
	$(MAKE) --no-print-directory app

# The Streamlit app (ui/app.py) on 127.0.0.1 only; settings in .streamlit/config.toml.
app: setup
	$(BIN)/streamlit run ui/app.py --server.address 127.0.0.1 --browser.gatherUsageStats false

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Lint and the unit tests only (no training, no servers): under two minutes.
test-fast: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The fast tests on another Python, in a venv of its own under .fingerspell/ (make clean
# removes it): make test-py PY=python3.12. Python 3.11 takes torch from this machine's disk;
# another Python downloads torch 2.14.1's CUDA build from PyPI (several GB: docs/running.md).
PY ?= python3.12
PY_VENV = .fingerspell/venvs/$(notdir $(PY))
test-py:
	test -x $(PY_VENV)/bin/python || $(PY) -m venv $(PY_VENV)
	$(PY_VENV)/bin/pip install -q --upgrade pip
	$(PY_VENV)/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY_VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	$(PY_VENV)/bin/pip check
	$(PY_VENV)/bin/python --version
	$(PY_VENV)/bin/fingerspell --help >/dev/null
	$(PY_VENV)/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

# pip's own resolution of `pip install .`, `.[app]` and `.[gcp]` (a dry run against the package
# index and the lock, a few minutes): the app gets no Google Cloud package, gcp no Streamlit.
check-extras: setup
	$(BIN)/python tests/test_packaging.py

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

# Prefect server + MLflow server + process worker on 127.0.0.1 with the local deployments; Ctrl-C stops all.
serve: setup
	bash deployments/serve.sh

# The team stack (deployments/team/): PostgreSQL, Prefect and MLflow servers on it, the
# team-process pool and two workers, in the background; team-down stops what team-up started.
team-up: setup
	BIN=$(BIN) bash deployments/team/up

team-down:
	BIN=$(BIN) bash deployments/team/down

# Every cache the project writes; never .venv.
clean:
	rm -rf .fingerspell .pytest_cache .ruff_cache benchmarks/results runs
	find . -path ./.venv -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
