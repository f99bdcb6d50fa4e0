# Driftline task runner. `make help` lists the targets; CI runs `make test` (.ci/run).
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install Driftline with its dev tools

prepare: install ## Fetch the Kafka broker jars (Maven) and install redis-server, PostgreSQL, Prometheus, kcat and jq if missing
	$(BIN)/driftline stack prepare

demo: prepare ## Start the stack, a worker and the API; two days of a model: drift, late labels, alerts, plots
	$(BIN)/driftline demo

test: prepare lint typecheck ## Everything CI runs: lint, types, every tier below (faults: a short run)
	$(BIN)/python -m pytest

unit: install ## Unit tests: pure logic (seconds)
	$(BIN)/python -m pytest tests/unit

component: install ## Component tests: one processor through the ProcessorDriver, no broker
	$(BIN)/python -m pytest tests/component

integration: prepare ## Integration tests: the pipeline on the real broker and Redis
	$(BIN)/python -m pytest tests/integration

e2e: prepare ## End-to-end tests: REST API, client and CLI on a running stack
	$(BIN)/python -m pytest tests/e2e

faults: prepare ## The fault suite at the issue's numbers (~6 min; CI runs a short one)
	DRIFTLINE_FAULTS=long $(BIN)/python -m pytest tests/faults

lint: install ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install ## mypy (strict) on the packages
	$(BIN)/mypy

bench: prepare ## Benchmarks (on demand, not in CI): merge agent vs raw passthrough
	$(BIN)/python benchmarks/ingest.py

stack-up: prepare ## Start the embedded Kafka broker, Redis and PostgreSQL servers
	$(BIN)/driftline stack up

stack-down: install ## Stop them
	$(BIN)/driftline stack down

.PHONY: help install prepare demo test unit component integration e2e faults lint format typecheck bench stack-up stack-down
