# medsign: the two commands of the README are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= auto

.PHONY: run test bootstrap deps node-deps lint typecheck unit bench clean

# Development appliance on http://127.0.0.1:8080: ./var holds the configuration, the SQLite data
# directory, the demo unseal passphrase and the demo credentials (init --demo is idempotent).
RUN_CONFIG ?= var/medsign.toml
run: bootstrap
	$(BIN)/medsign init --demo --config $(RUN_CONFIG)
	$(BIN)/medsign serve --config $(RUN_CONFIG)

test: bootstrap deps node-deps lint typecheck unit

# Create the virtualenv and install the pinned dependencies; redone when the pins change.
bootstrap: $(STAMP)
$(STAMP): pyproject.toml requirements.lock sdk/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e sdk/python
	touch $(STAMP)

# Debian packages the tests drive (real peers); installed when run as root, checked otherwise.
deps:
	scripts/install-debian-deps.sh

# The mini-program SDK's node packages, exactly as package-lock.json pins them (tests/peers).
node-deps:
	cd sdk/miniprogram && npm ci --no-audit --no-fund

lint: bootstrap
	$(BIN)/ruff check .

typecheck: bootstrap
	$(BIN)/mypy

unit: bootstrap
	$(BIN)/pytest -n $(PYTEST_WORKERS)

bench: bootstrap
	$(BIN)/python bench/crypto.py
	$(BIN)/python bench/keysplit.py
	$(BIN)/python bench/api.py  # then bench/audit.py
	$(BIN)/python bench/ca.py
	$(BIN)/python bench/flows.py
	$(BIN)/python bench/pdf.py
	$(BIN)/python bench/appearance.py  # issue 7: visible signatures against invisible ones
	$(BIN)/python bench/evidence.py  # issue 8: evidence reports over 1,000,000 entries

# Regenerate the lock file from pyproject.toml (run by a developer, then commit the result).
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet --upgrade pip setuptools && .lockenv/bin/pip install --quiet ".[dev]"
	.lockenv/bin/pip freeze --all --exclude medsign --exclude pip | sort > requirements.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
