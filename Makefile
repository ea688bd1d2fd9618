# Threadline: the two set-up commands are `make up` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint links typecheck pytest bench clean screenshots web-vendor

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

## Run Threadline on its embedded default (nats-server, SQLite, dev model).
up: $(STAMP)
	$(BIN)/threadline up

## Lint, type-check and run the whole test suite.
test: $(STAMP)
	$(MAKE) --no-print-directory lint typecheck pytest

lint: $(STAMP) links
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=.typecheck $(BIN)/lint-imports --no-cache

# mypy and import-linter cannot follow setuptools' editable import hook, so they read the
# packages through a tree of links that mirrors the installed layout
# (threadline.events -> events/).
links:
	mkdir -p .typecheck/threadline
	for d in base events services projections; do ln -sfn ../../$$d .typecheck/threadline/$$d; done

typecheck: $(STAMP) links
	MYPYPATH=.typecheck $(BIN)/mypy -p threadline.base -p threadline.events -p threadline.services -p threadline.projections

pytest: $(STAMP)
	$(BIN)/pytest

## The web pages' screenshots in docs/screenshots/ (headless Chromium, see docs/web.md).
screenshots: $(STAMP)
	$(BIN)/python -m tests.web.screenshots

## Re-vendor the web page's pinned front-end libraries (npm registry).
web-vendor:
	sh tests/web/vendor.sh

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .typecheck .mypy_cache .ruff_cache .pytest_cache
