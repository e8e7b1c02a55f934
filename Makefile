# genline: `make dev` runs everything on this machine; `make test` runs the whole suite:
# lint (ruff, mypy), then the unit tier (tests/unit, no services, seconds), then the
# integration tier (the rest of tests/, on real services). docs/development.md.
#
# `make dev` installs only what running needs; `make test` and `make bench` add the
# test, bench, diffusers and docs extras; `make docs` builds the docs site into site/.
# A stamp file per set records what is installed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --quiet --quiet --disable-pip-version-check
STAMP_DEV := $(VENV)/.installed-dev
STAMP_ALL := $(VENV)/.installed-dev-test-bench
STAMP_DOCS := $(VENV)/.installed-docs
# The diffusers extra's torch, installed first by `make test`: this exact release is the
# CPU build on the machine's disk; a range would download a multi-GB CUDA build. On a
# GPU box set TORCH to the build that matches its CUDA (docs/diffusers.md).
TORCH ?= torch==2.13.0
# Six pytest-xdist workers, longest tests first: most tests wait on real services
# (provider calls, leases, timeouts; the CPU is 60% idle at -n 3), so six stacks side
# by side (own Redis, own database in the run's own Postgres each) fit on two cores;
# at -n 8 the cores saturate and the run ends no sooner. A file is handed out whole
# unless its tests each build their own stack (tests/conftest.py: SPLIT_PER_TEST);
# --no-loadscope-reorder keeps tests/conftest.py's longest-first order.
PYTEST_ARGS ?= -n 6 --dist loadgroup --no-loadscope-reorder
# What ruff and mypy check (their settings: .ruff.toml, .mypy.ini).
LINT_PATHS ?= pipeline web tests clients/python

.PHONY: install dev test test-unit test-integration lint bench docs clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "genline needs Python 3.10 or newer")'
	@echo "make: creating $(VENV) and installing genline (about a minute the first time)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip

# The Python client (clients/python) comes along: `genline submit` uses it.
$(STAMP_DEV): setup.py setup.cfg clients/python/pyproject.toml | $(BIN)/python
	@$(PIP) install -e '.[dev]' -e ./clients/python
	@touch $@

# Everything else `make test` and `make bench` need: the test and bench extras, the
# diffusers extra, whose provider the tests run on a tiny model, the otel extra
# (tests/test_tracing.py), and the docs extra, whose strict build is a test. Its stamp marks the dev and docs sets installed too.
$(STAMP_ALL): setup.py setup.cfg clients/python/pyproject.toml | $(BIN)/python
	@$(PIP) install '$(TORCH)'
	@$(PIP) install -e '.[dev,test,bench,diffusers,docs,otel]' -e ./clients/python
	@touch $@ $(STAMP_DEV) $(STAMP_DOCS)

# MkDocs and the Material theme alone, for `make docs`.
$(STAMP_DOCS): setup.py setup.cfg | $(BIN)/python
	@$(PIP) install -e '.[docs]'
	@touch $@

# Everything: for people working on genline itself.
install: $(STAMP_ALL)

# `genline dev` exits 0 on Ctrl-C, so make reports no error.
dev: $(STAMP_DEV)
	@$(BIN)/genline dev

# Everything, cheapest first: a lint error or a unit failure stops the run in seconds.
test: lint test-unit test-integration

lint: $(STAMP_ALL)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy $(LINT_PATHS)

# No Postgres, Redis, worker or network: one process, well under a minute.
test-unit: $(STAMP_ALL)
	$(BIN)/python -m pytest -n 0 tests/unit

test-integration: $(STAMP_ALL)
	$(BIN)/python -m tests.prepare
	@if command -v npm >/dev/null; then cd clients/js && npm ci --no-audit --no-fund --silent; else echo 'node/npm not found: the TypeScript client tests will be skipped (Node 18+ needed)'; fi
	$(BIN)/python -m pytest $(PYTEST_ARGS) --ignore=tests/unit

bench: $(STAMP_ALL)
	$(BIN)/genline bench

# The docs site (mkdocs.yml, docs/) into site/. --strict turns every warning into a
# failure: a broken link or anchor, a page missing from the nav. Nothing is fetched.
docs: $(STAMP_DOCS)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) var site *.egg-info .ruff_cache .mypy_cache
