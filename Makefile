# Threadline: the two set-up commands are `make up` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint typecheck pytest bench clean

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

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow setuptools' editable import hook, so it reads the packages
# through a tree of links that mirrors the installed layout (threadline.events -> events/).
typecheck: $(STAMP)
	mkdir -p .typecheck/threadline
	for d in events services projections; do ln -sfn ../../$$d .typecheck/threadline/$$d; done
	MYPYPATH=.typecheck $(BIN)/mypy -p threadline.events -p threadline.services -p threadline.projections

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .typecheck .mypy_cache .ruff_cache .pytest_cache
