# Every target bootstraps what it needs on a fresh machine (Python 3.11, make, pip).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
TOOLS := .venv-tools
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: serve test lint types unit integration e2e infra bench build clean

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[local,train,dev]'
	touch $@

$(TOOLS)/.installed: tests/infra/requirements-tools.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q -r tests/infra/requirements-tools.txt
	touch $@

serve: $(VENV)/.installed
	$(VENV)/bin/aimass serve

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(VENV)/.installed
	$(VENV)/bin/mypy

test: lint types $(TOOLS)/.installed
	$(VENV)/bin/pytest -q -p no:cacheprovider

unit integration e2e infra: $(VENV)/.installed $(TOOLS)/.installed
	$(VENV)/bin/pytest -q tests/$@

bench: $(VENV)/.installed
	$(VENV)/bin/python -m bench

build: $(TOOLS)/.installed
	$(TOOLS)/bin/sam build

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .aimass
