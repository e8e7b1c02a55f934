# genline: `make dev` runs everything on this machine; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install dev test bench clean

$(STAMP): setup.py setup.cfg clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "genline needs Python 3.10 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev,bench]'
	$(BIN)/pip install --quiet -e ./clients/python
	touch $(STAMP)

install: $(STAMP)

dev: install
	$(BIN)/genline dev

test: install
	$(BIN)/python -m tests.prepare
	@if command -v npm >/dev/null; then cd clients/js && npm ci --no-audit --no-fund --silent; else echo 'node/npm not found: the TypeScript client tests will be skipped (Node 18+ needed)'; fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/genline bench

clean:
	rm -rf $(VENV) var *.egg-info
