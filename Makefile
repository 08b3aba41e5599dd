# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The MariaDB/MySQL driver (the `mysql` extra, mysqlclient) builds against the client headers. Without them the
# install goes on without it and says how to add it (tests that need MariaDB then skip, or fail in CI); the
# stamp's name records the choice, so installing the headers later makes the next `make` add the driver.
MYSQL_HEADERS := $(shell (pkg-config --exists libmariadb || pkg-config --exists mysqlclient) 2>/dev/null && echo yes)
COMMA := ,
EXTRAS := demo,dev$(if $(MYSQL_HEADERS),$(COMMA)mysql)
STAMP := $(VENV)/.installed$(if $(MYSQL_HEADERS),-mysql)

.PHONY: install demo test lint bench-sealed clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	@test -n "$(MYSQL_HEADERS)" || echo "note: no MariaDB client headers, so no MariaDB driver; for DATABASE_URL=mysql://..." \
		"run apt-get install libmariadb-dev pkg-config (or your system's equivalent), then make install"
	touch $(STAMP)

## The project's own modules are compiled here, not left to each start: pip compiles what it installs, but not
## an editable install's sources, and shells or images that set PYTHONDONTWRITEBYTECODE never write the cache, so
## every command compiled dbs_admin from source again (~0.2 s CPU of a `dbs_backup`). Quick when nothing changed.
install: $(STAMP)
	$(BIN)/python -m compileall -q dbs_admin demo_site blog

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
