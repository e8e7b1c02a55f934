# genline: `make dev` runs everything on this machine; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH ?= torch==2.13.0
# The diffusers extra's torch, installed first: this exact release is the CPU build
# on the machine's disk; a range would download a multi-GB CUDA build. On a GPU box
# set TORCH to the build that matches its CUDA (docs/diffusers.md).

.PHONY: install dev test bench clean

$(STAMP): setup.py setup.cfg
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "genline needs Python 3.10 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '$(TORCH)'
	$(BIN)/pip install --quiet -e '.[test,dev,bench,diffusers]'
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
