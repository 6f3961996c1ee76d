# Every target bootstraps what it needs on a fresh machine (Python 3.11, make, pip).
SHELL := /bin/bash
# The Lambdas run python3.12: build and test on it where the machine has one (pyenv's included),
# else on 3.11.
PYTHON ?= $(shell for p in python3.12 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 2>/dev/null) \
	python3.11 python3; do "$$p" -c '' 2>/dev/null && { command -v "$$p"; break; }; done)
VENV := .venv
TOOLS := .venv-tools
KSERVE := .venv-kserve
BENTO := .venv-bento
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: serve test lint types unit integration e2e infra bench bench-memory build build-images clean

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[local,train,dev]'
	touch $@

$(TOOLS)/.installed: tests/infra/requirements-tools.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q -r tests/infra/requirements-tools.txt
	touch $@

# KServe's client for its e2e test, apart from the app: its dependencies conflict with ours.
$(KSERVE)/.installed: tests/e2e/requirements-kserve.txt
	test -x $(KSERVE)/bin/python || $(PYTHON) -m venv $(KSERVE)
	$(KSERVE)/bin/python -m pip install -q -r tests/e2e/requirements-kserve.txt
	touch $@

# BentoML, the HTTP benchmark's peer, apart from the app: it must never constrain the app's versions.
$(BENTO)/.installed: bench/requirements-bento.txt
	test -x $(BENTO)/bin/python || $(PYTHON) -m venv $(BENTO)
	$(BENTO)/bin/python -m pip install -q -r bench/requirements-bento.txt
	touch $@

serve: $(VENV)/.installed
	$(VENV)/bin/aimass serve

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(VENV)/.installed
	$(VENV)/bin/mypy

test: lint types $(TOOLS)/.installed $(KSERVE)/.installed
	$(VENV)/bin/pytest -q -p no:cacheprovider

unit integration e2e infra: $(VENV)/.installed $(TOOLS)/.installed $(KSERVE)/.installed
	$(VENV)/bin/pytest -q tests/$@

bench: $(VENV)/.installed $(BENTO)/.installed
	$(VENV)/bin/python -m bench

# The local stack's memory under registry writes, moto's own DynamoDB vs the stack's seam (RESULTS.md).
bench-memory: $(VENV)/.installed
	$(VENV)/bin/python -m bench.memory

# The zip functions and the layers, without Docker: every function of template.yaml but its image
# functions (PackageType: Image), which scripts/sam_resources.py reads from the template.
build: $(TOOLS)/.installed
	@echo "Building: $$($(TOOLS)/bin/python scripts/sam_resources.py zip)"
	$(TOOLS)/bin/sam build $$($(TOOLS)/bin/python scripts/sam_resources.py image | xargs -rn1 printf -- '--exclude %s ')

# Everything, the image functions included: needs Docker. The zip functions and layers come from
# sam build's cache when `make build` built them. sam deploy needs this build (docs/deploy.md).
build-images: $(TOOLS)/.installed
	@command -v docker >/dev/null || { echo "make build-images needs Docker to build" \
		"$$($(TOOLS)/bin/python scripts/sam_resources.py image): docker is not installed or not on PATH." >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make build-images needs a running Docker daemon: docker info failed." >&2; exit 1; }
	$(TOOLS)/bin/sam build

clean:
	rm -rf $(VENV) $(TOOLS) $(KSERVE) $(BENTO) .aws-sam .aimass
