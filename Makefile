# The two commands of the README: `make run` and `make test`. Everything they need is
# installed from here (a venv in .venv, the llama-server fixture in ~/.cache/autoinfer-test).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 11434
FIXTURES := $(HOME)/.cache/autoinfer-test/llama-server-$(LLAMA_VERSION)
RUN_ROOT := $(CURDIR)/.autoinfer
PYTEST_ARGS ?=

.PHONY: install fixtures run test test-fast lint format bench image clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

fixtures: install
	bash tests/fixtures/build-llama-server.sh

## run: boot the real llama-server with a tiny model under supervisord, in the foreground.
run: fixtures
	@mkdir -p $(RUN_ROOT)/models
	@test -f $(RUN_ROOT)/models/tiny.gguf || $(BIN)/python tests/fixtures/tiny_gguf.py $(RUN_ROOT)/models/tiny.gguf
	@echo "autoinfer: when it is up: curl http://127.0.0.1:8080/health  (Ctrl-C stops everything)"
	AUTO_INFER_ROOT=$(RUN_ROOT) \
	AUTO_INFER_LLAMA_CPP_GET_PKG_ON_BOOT=1 \
	AUTO_INFER_LLAMA_CPP_PKG_PATH=$(FIXTURES)/llama-b$(LLAMA_VERSION)-bin-ubuntu-x64.tar.gz \
	AUTO_INFER_LLAMA_CPP_ON_BOOT=1 \
	AUTO_INFER_LLAMA_CPP_CONFIG=$(CURDIR)/config/run.toml \
	XDG_CONFIG_HOME=$(RUN_ROOT)/xdg \
	$(BIN)/autoinfer boot

## test: the whole suite. Process-level tests run on both cores; the container tests
## (marked slow: real podman, one shared image) run after them, one at a time.
test: fixtures
	$(BIN)/python -m pytest -m "not slow" -n 2 $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-fast: fixtures
	$(BIN)/python -m pytest -m "not slow" -n 2 $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check entrypoint tests bench
	$(BIN)/ruff format --check entrypoint tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format entrypoint tests bench
	$(BIN)/ruff check --fix entrypoint tests bench

bench: fixtures
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

image: install
	bash docker/build-image.sh

clean:
	rm -rf $(VENV) .autoinfer dist build *.egg-info .pytest_cache .mypy_cache .ruff_cache
