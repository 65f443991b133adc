# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
# the node-opcua test server's packages (tests/nodeopcua), installed again when its lockfile changes
NODEOPCUA := tests/nodeopcua
NODE_STAMP := $(NODEOPCUA)/node_modules/.installed-$(shell cat $(NODEOPCUA)/package-lock.json | cksum | cut -d' ' -f1)
# Eclipse Tahu's Sparkplug B encoder and edge node client (tests/sparkplug_node), likewise
SPARKPLUG_NODE := tests/sparkplug_node
SPARKPLUG_STAMP := $(SPARKPLUG_NODE)/node_modules/.installed-$(shell cat $(SPARKPLUG_NODE)/package-lock.json | cksum | cut -d' ' -f1)

.PHONY: setup system demo test lint constraints clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP) system

## Debian packages (Chromium, Mosquitto) when missing
system:
	bash scripts/system-deps.sh

## Simulated plant + pipeline + dashboard; pass options with ARGS="--headless --minutes 1"
demo: setup
	$(BIN)/floorsight demo $(ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

## npm ci of the node-opcua test server (from npm's cache when it has the packages)
$(NODE_STAMP): $(NODEOPCUA)/package.json $(NODEOPCUA)/package-lock.json | system
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $(NODEOPCUA) --no-audit --no-fund --prefer-offline --ignore-scripts && touch $@; \
	else echo "npm is missing: the node-opcua tests skip (make system installs nodejs and npm)" >&2; fi

## npm ci of Tahu's Sparkplug packages for the Sparkplug tests
$(SPARKPLUG_STAMP): $(SPARKPLUG_NODE)/package.json $(SPARKPLUG_NODE)/package-lock.json | system
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $(SPARKPLUG_NODE) --no-audit --no-fund --prefer-offline --ignore-scripts && touch $@; \
	else echo "npm is missing: the Sparkplug tests skip (make system installs nodejs and npm)" >&2; fi

test: lint $(NODE_STAMP) $(SPARKPLUG_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Re-pin after changing dependencies in pyproject.toml
constraints:
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	{ echo "# Pinned versions CI tested; install with: pip install -c constraints.txt -e '.[dev]'"; \
	  echo "# Regenerate: make constraints (after changing dependencies in pyproject.toml)"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e'; } > constraints.txt

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
