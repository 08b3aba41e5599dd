# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench-sealed clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[demo,dev]'
	touch $(STAMP)

install: $(STAMP)

## Start the demo console (web, Celery worker, Celery beat) on SQLite and the filesystem broker.
demo: install
	./scripts/demo.sh

## Run the whole test suite (DATABASE_URL / REDIS_URL select PostgreSQL / Redis; never the demo's keys).
test: install
	DBS_DEMO_KEYS=0 $(BIN)/pytest $(PYTEST_ARGS)

## Ruff, and the layer contracts of DESIGN.md (import-linter, configured in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo

clean:
	rm -rf var/ .pytest_cache .ruff_cache .hypothesis
