# Two commands from a fresh clone: `make demo` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SERVERS := tools/servers

.PHONY: demo test lint bench stack lambda system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.runtime

$(SERVERS)/node_modules/.installed: $(SERVERS)/package.json $(SERVERS)/package-lock.json
	cd $(SERVERS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

system-deps:
	./scripts/install-system-deps.sh

## demo: create the virtual environment, install, run the demo on the default store
demo: $(VENV)/.runtime
	$(BIN)/user-limits demo

## test: install the test dependencies and servers, lint, type-check, run the whole suite
test: $(VENV)/.dev $(SERVERS)/node_modules/.installed system-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## bench: throughput of the handler and the API, cold import, DynamoDB requests per event
bench: $(VENV)/.dev $(SERVERS)/node_modules/.installed system-deps
	$(BIN)/python -m bench.run

## stack: kinesis-local + PostgreSQL on loopback, a stream, the sample produced, a consumer
stack: $(VENV)/.dev $(SERVERS)/node_modules/.installed system-deps
	./scripts/stack.sh

## lambda: dist/lambda.zip for the Lambda Python 3.12 runtime
lambda: $(VENV)/.runtime
	$(BIN)/user-limits build-lambda

clean:
	rm -rf $(VENV) dist build $(SERVERS)/node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
