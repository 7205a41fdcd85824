# The two commands: `make dev` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PY := .venv/bin/python
VENV := .venv/.installed
TASKS_VENV := .venv-tasks/.installed
NODE := node_modules/.installed

.PHONY: setup dev test token openapi lint check-tools bench

setup: check-tools $(VENV) $(TASKS_VENV) $(NODE)

check-tools:
	@command -v python3 >/dev/null || { echo "python3 (3.11+) is required" >&2; exit 1; }
	@command -v java >/dev/null || { echo "java (17+) is required by the Firestore emulator" >&2; exit 1; }
	@command -v npm >/dev/null || { echo "node and npm are required by the Auth emulator" >&2; exit 1; }
	@command -v gcloud >/dev/null || [ -n "$$FIRESTORE_EMULATOR_JAR" ] || { echo "the Google Cloud CLI (firestore-emulator component) is required" >&2; exit 1; }

$(VENV): requirements-dev.txt $(wildcard functions/*/requirements.txt)
	python3 -m venv .venv
	.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(TASKS_VENV): requirements-tasks-emulator.txt
	python3 -m venv .venv-tasks
	.venv-tasks/bin/pip install -q --disable-pip-version-check -r requirements-tasks-emulator.txt
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

## make openapi: regenerate shared/openapi.json after changing routes or models
openapi: $(VENV)
	$(PY) -m devstack openapi

## make bench: cold starts against bare functions, chat ticket overhead, face analysis latency,
## run-code overhead against in-process execution
bench: setup
	PYTHONPATH=. $(PY) bench/cold_start.py --function providers --path /providers
	PYTHONPATH=. $(PY) bench/cold_start.py --function storage --path /storage/profile-image/x/y \
		--baseline bench/bare_storage_function.py:bare_storage
	PYTHONPATH=. $(PY) bench/ticket_overhead.py --tickets 200
	PYTHONPATH=. $(PY) bench/face_analysis.py --runs 20
	PYTHONPATH=. $(PY) bench/run_code_overhead.py --runs 200
