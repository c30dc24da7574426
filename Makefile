# skyops developer and CI entry points. `make test` is what .ci/run runs.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
VENV_STAMP := $(VENV)/.installed
SERVICES := bash deploy/scripts/services.sh
# Exports SKYOPS_TEST_REDIS_URL, SKYOPS_TEST_CASSANDRA_HOSTS, SKYOPS_TEST_SQL_URL into the recipe's shell.
WITH_ENV := eval "$$($(SERVICES) env)" &&

.PHONY: venv run services-up services-down services-status browser-deps test lint bench clean

venv: $(VENV_STAMP)

# Re-installed only when pyproject.toml changes (or the venv is missing).
$(VENV_STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	@touch $@

run: venv
	$(VENV)/bin/skyops up

# services-up uses the venv's cassandra-driver to wait for the first CQL answer.
services-up: venv
	$(SERVICES) up

services-down:
	$(SERVICES) down

services-status:
	$(SERVICES) status

# Debian's Chromium for the browser tests (Playwright uses it; it never downloads a browser).
browser-deps:
	bash deploy/scripts/chromium.sh install

test: venv services-up browser-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(WITH_ENV) $(VENV)/bin/pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: venv services-up
	@shopt -s nullglob; files=(bench/*.py); \
	if (( $${#files[@]} == 0 )); then echo "no bench/*.py"; exit 0; fi; \
	$(WITH_ENV) for f in "$${files[@]}"; do echo "== $$f"; $(VENV)/bin/python "$$f"; done

# Removes tool caches and build output; leaves .venv, var/ (server data) and the jar cache alone.
clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist deploy/cassandra/target
	find . -path ./.venv -prune -o -path ./var -prune -o -name __pycache__ -type d -print0 | xargs -0 -r rm -rf
