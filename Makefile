# ftbnn-exp. Every target creates .venv and installs the package on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: help setup train test test-slow lint clean

help: ## List the targets and their variables
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "  variables: ARGS='hydra overrides' for train"

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the package with its test tools

train: $(STAMP) ## Train the FTBNN baseline on the embedded digits (ARGS= adds overrides)
	$(PY) -m ftbnn_exp $(ARGS)

test: $(STAMP) ## Run the default test suite (< 10 min on 2 cores)
	$(PY) -m pytest -q

test-slow: $(STAMP) ## Run the tests marked slow
	$(PY) -m pytest -q -m slow

lint: $(STAMP) ## ruff over the code
	$(VENV)/bin/ruff check src tests

clean: ## Remove run outputs (keeps .venv)
	rm -rf outputs multirun
