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

.PHONY: install test test-all run clean-venv

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

## run: the whole pipeline on the dataset named by MCLFIR_DATA_ROOT, then register the model and apply the gate
run: $(STAMP)
	$(BIN)/mclfir tracking start --name "make run"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro; status=$$?; \
	if [ $$status -eq 0 ]; then $(BIN)/mclfir tracking finish --status FINISHED; \
	else $(BIN)/mclfir tracking finish --status FAILED; exit $$status; fi
	$(BIN)/mclfir registry register
	$(BIN)/mclfir registry review
	@echo "MLflow: $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db"
	@echo "DVC:    $(BIN)/dvc metrics show; $(BIN)/dvc plots show"

clean-venv:
	rm -rf $(VENV)
