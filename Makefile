# The two commands the README starts with: `make example` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ENV_FILE ?= examples/example.env

.PHONY: example test lint bench clean

$(BIN)/sipagent: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

examples/tls/sip.example.com.crt: | $(BIN)/sipagent
	$(BIN)/sipagent tls self-signed --out examples/tls --name sip.example.com

## Set up, then validate and render the bundled example into build/freeswitch (no FreeSWITCH needed).
example: $(BIN)/sipagent examples/tls/sip.example.com.crt
	$(BIN)/sipagent validate examples/deployment.yaml --env-file $(ENV_FILE)
	$(BIN)/sipagent render examples/deployment.yaml --env-file $(ENV_FILE) --out build/freeswitch
	$(BIN)/sipagent show examples/deployment.yaml --env-file $(ENV_FILE)

## Run the tests, one process per core (docs/testing.md; real-FreeSWITCH tests run when FREESWITCH_ESL, FREESWITCH_BIN or a Docker engine is there, else they skip).
test: $(BIN)/sipagent
	$(BIN)/python -m pytest

## Lint and type-check (mypy strict over orchestrator/: [tool.mypy] in pyproject.toml).
lint: $(BIN)/sipagent
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BIN)/sipagent
	$(BIN)/python bench/render.py

clean:
	rm -rf build .pytest_cache .ruff_cache
