# Two commands from a fresh clone: `make demo` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements
SERVERS := tools/servers
# The SAM CLI pins boto3, click and a dozen others exactly: it gets its own environment and lock.
SAM_VENV := .venv-sam
# Lambda's python3.12 runtime around the unpacked lambda.zip: awslambdaric on Python 3.12.
LAMBDA_VENV := .venv-lambda

.PHONY: demo test test-fast lint bench stack lambda lock system-deps clean

# Every install comes from the lock, requirements/*.txt (see `make lock`): exact versions and the hashes
# of their files, so a fresh machine installs what was tested. The project itself is built by the
# locked setuptools already in the venv: no build isolation, so nothing unpinned is downloaded.
PIP := $(BIN)/python -m pip --disable-pip-version-check
INSTALL := $(PIP) install --quiet --require-hashes
INSTALL_PROJECT := $(PIP) install --quiet --no-deps --no-build-isolation -e .

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pip and setuptools first: they install and build everything after them.
$(VENV)/.tools: $(LOCK)/tools.txt | $(BIN)/python
	$(INSTALL) -r $(LOCK)/tools.txt
	touch $@

$(VENV)/.runtime: $(LOCK)/runtime.txt pyproject.toml $(VENV)/.tools
	$(INSTALL) -r $(LOCK)/runtime.txt
	$(INSTALL_PROJECT)
	touch $@

# The dev lock holds the runtime lock's exact versions (it constrains it), so it satisfies .runtime too.
$(VENV)/.dev: $(LOCK)/dev.txt pyproject.toml $(VENV)/.tools
	$(INSTALL) -r $(LOCK)/dev.txt
	$(INSTALL_PROJECT)
	touch $@ $(VENV)/.runtime

$(VENV)/.uv: $(LOCK)/uv.txt $(VENV)/.tools
	$(INSTALL) -r $(LOCK)/uv.txt
	touch $@

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

## test-fast: the unit tier alone (no server, no install beyond the venv): the quick loop
test-fast: $(VENV)/.dev
	$(BIN)/pytest tests/unit -q

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## bench: throughput of the handler (beside a reference and a decode floor) and the API, cold import,
##        a rebuild from JSON Lines (records/s, peak memory), DynamoDB requests per event
bench: $(VENV)/.dev $(SERVERS)/node_modules/.installed system-deps
	$(BIN)/python -m bench.run

## stack: kinesis-local + PostgreSQL on loopback, a stream, the sample produced, a consumer
stack: $(VENV)/.dev $(SERVERS)/node_modules/.installed system-deps
	./scripts/stack.sh

## lambda: dist/lambda.zip for the Lambda Python 3.12 runtime, from requirements/lambda.txt
lambda: $(VENV)/.runtime
	$(BIN)/user-limits build-lambda

# The lock is made from the package index's own files and hashes, whatever this machine's uv
# settings say (a uv.toml, or an index or find-links in the environment).
unexport UV_CONFIG_FILE UV_INDEX UV_INDEX_URL UV_DEFAULT_INDEX UV_EXTRA_INDEX_URL UV_FIND_LINKS UV_NO_INDEX \
	UV_CONSTRAINT UV_OVERRIDE
UV_PIP_COMPILE = $(BIN)/uv pip compile --quiet --no-config --universal --generate-hashes \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)
UV_COMPILE = $(UV_PIP_COMPILE) --python-version 3.11

## lock: refresh requirements/*.txt after a change to pyproject.toml's dependencies, keeping every other
##       pin; `make lock UPGRADE=1` takes the newest releases the ranges allow
# The dev lock first; every other file takes its versions, so what ships is what the suite ran with.
lock: $(VENV)/.uv
	$(UV_COMPILE) $(LOCK)/uv.in -o $(LOCK)/uv.txt
	$(MAKE) $(VENV)/.uv
	$(UV_COMPILE) pyproject.toml $(LOCK)/tools.in --extra dev -o $(LOCK)/dev.txt
	$(UV_COMPILE) -c $(LOCK)/dev.txt $(LOCK)/tools.in -o $(LOCK)/tools.txt
	$(UV_COMPILE) -c $(LOCK)/dev.txt pyproject.toml $(LOCK)/tools.in -o $(LOCK)/runtime.txt
	$(UV_COMPILE) -c $(LOCK)/dev.txt pyproject.toml $(LOCK)/tools.in \
		--extra postgres --extra dynamodb --extra api --extra metrics -o $(LOCK)/service.txt
	$(UV_COMPILE) -c $(LOCK)/dev.txt pyproject.toml --extra lambda -o $(LOCK)/lambda.txt
	@# The test tools with environments of their own: the SAM CLI, and Lambda's runtime client on 3.12.
	$(UV_COMPILE) tools/sam/requirements.in -o tools/sam/requirements.txt
	$(UV_PIP_COMPILE) --python-version 3.12 tools/lambda-runtime/requirements.in -o tools/lambda-runtime/requirements.txt

clean:
	rm -rf $(VENV) $(SAM_VENV) $(LAMBDA_VENV) dist build $(SERVERS)/node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
