# genline: `make dev` runs everything on this machine; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install dev test bench clean

$(STAMP): setup.py setup.cfg
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "genline needs Python 3.10 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev,bench]'
	touch $(STAMP)

install: $(STAMP)

dev: install
	$(BIN)/genline dev

test: install
	$(BIN)/python -m tests.prepare
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/genline bench

clean:
	rm -rf $(VENV) var *.egg-info
