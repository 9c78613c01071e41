# Two commands from a fresh clone: `make demo` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SERVERS := tools/servers
# The SAM CLI pins boto3, click and a dozen others exactly: it gets its own environment and lock.
SAM_VENV := .venv-sam
# Lambda's python3.12 runtime around the unpacked lambda.zip: awslambdaric on Python 3.12.
LAMBDA_VENV := .venv-lambda

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

$(SAM_VENV)/.installed: tools/sam/requirements.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --no-deps --require-hashes -r tools/sam/requirements.txt
	$(SAM_VENV)/bin/pip check >/dev/null
	touch $@

# Without a Python 3.12 on the machine, nothing is made and the Lambda runtime tests say they skip.
$(LAMBDA_VENV)/.installed: tools/lambda-runtime/requirements.txt
	@python312="$$(./scripts/find-python.sh 3.12)" || { echo "no Python 3.12 found: the Lambda runtime tests will skip"; exit 0; }; \
	set -e; "$$python312" -m venv $(LAMBDA_VENV); \
	$(LAMBDA_VENV)/bin/pip install --quiet --no-deps --require-hashes -r tools/lambda-runtime/requirements.txt; \
	touch $@

system-deps:
	./scripts/install-system-deps.sh

## demo: create the virtual environment, install, run the demo on the default store
demo: $(VENV)/.runtime
	$(BIN)/user-limits demo

## test: install the test dependencies and servers, lint, type-check, run the whole suite
test: $(VENV)/.dev $(SERVERS)/node_modules/.installed $(SAM_VENV)/.installed $(LAMBDA_VENV)/.installed system-deps
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
	rm -rf $(VENV) $(SAM_VENV) $(LAMBDA_VENV) dist build $(SERVERS)/node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
