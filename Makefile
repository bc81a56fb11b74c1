# Set-up and entry points. Both targets create .venv on first use and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mclfir-installed
PYTEST_ARGS ?=

# Offline switches: nothing waits on a network that is not there. Override any of them in the environment.
export HF_HUB_OFFLINE ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= true
export MLFLOW_DISABLE_TELEMETRY ?= true
export DVC_NO_ANALYTICS ?= 1
# Prefect's database (ephemeral API and `make serve`) and logs stay inside the project.
export PREFECT_HOME ?= $(CURDIR)/.prefect
PREFECT_PORT ?= 4200
# MLflow parent run of `make compare`; the comparison's stage runs nest under it.
COMPARE_RUN_FILE := compare/.mlflow_parent_run

.PHONY: install test test-all run compare compare-report serve stop-server clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

## test: the default suite (unit, integration, and realdata when MCLFIR_DATA_ROOT is set); slow tests are left out
test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

## test-all: every test, slow ones included
test-all: $(STAMP)
	$(BIN)/pytest -m "" $(PYTEST_ARGS)

## run: the continual Prefect flow on the dataset named by MCLFIR_DATA_ROOT: DVC stages, register, gate
run: $(STAMP)
	$(BIN)/python -m flows.continual

## compare: train and evaluate every strategy (compare/dvc.yaml), resumable; writes metrics/compare.json and docs/results.md
compare: $(STAMP)
	$(BIN)/mclfir tracking start --name compare --parent-file $(COMPARE_RUN_FILE)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro compare/dvc.yaml; status=$$?; \
	$(BIN)/mclfir tracking finish --parent-file $(COMPARE_RUN_FILE) --status $$(if [ $$status = 0 ]; then echo FINISHED; else echo FAILED; fi); \
	exit $$status

## compare-report: rewrite metrics/compare.json, docs/results.md and its figures from the strategies evaluated so far
compare-report: $(STAMP)
	$(BIN)/mclfir compare report

## serve: a Prefect server on 127.0.0.1:$(PREFECT_PORT) serving both deployments; Ctrl-C stops both
serve: $(STAMP)
	$(BIN)/python -m flows.deploy --start-server --port $(PREFECT_PORT)

## stop-server: stop a server that `make serve` left running (its PID is in .prefect/server.pid)
stop-server:
	@if [ -f .prefect/server.pid ]; then kill -s TERM -- -$$(cat .prefect/server.pid) && rm -f .prefect/server.pid && echo "Stopped the Prefect server"; \
	else echo "No .prefect/server.pid: no server started by make serve is running"; fi

clean-venv:
	rm -rf $(VENV)
