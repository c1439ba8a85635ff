# Local development and CI. Needs only python3 (3.11+), make and a C compiler: PostgreSQL
# and Redis are embedded (see devstack/) unless DATABASE_URL / REDIS_URL are set.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements.stamp
# Ops commands get DATABASE_URL / REDIS_URL from here, reusing the servers of a running
# `make run` or starting (and afterwards stopping) embedded ones.
DEVSTACK := $(PY) -m devstack
WITH_STACK := $(DEVSTACK) exec --
FLASK  := $(PY) -m flask --app wsgi
CELERY := $(PY) -m celery -A tasks.celery_app
# devstack/ reads DATA_DIR itself (same default); not exported, so tests never
# see a relative DATA_DIR.
DATA_DIR ?= .data

WORKER_CONCURRENCY ?= 2
# The worker serves Prometheus metrics on this port (`make worker WORKER_METRICS_PORT=` for none).
WORKER_METRICS_PORT ?= 9808
# `make worker WORKER_BEAT=` runs a worker without the embedded scheduler (then run `make beat`).
WORKER_BEAT ?= -B -s "$(DATA_DIR)/celerybeat-schedule"

.DEFAULT_GOAL := help

.PHONY: help venv run api worker beat flower migrate revision tenant revoke-key resync \
	resync-failed bench bench-hostile bench-corpus bench-excel test test-unit test-faults screenshots lint format stop clean clean-data

help: ## this list
	@echo "usage: make TARGET [VAR=value]"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

# Reinstall only when requirements.txt changed since the last install.
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --no-input -r requirements.txt
	touch $@

venv: $(STAMP) ## create .venv and install requirements.txt

# `make run STORAGE=s3`: files and Delta tables on an embedded S3 server (SeaweedFS) under DATA_DIR/s3.
STORAGE ?= local

run: $(STAMP) ## everything: migrate, dev tenant, API :8000, worker+beat (metrics :9808), Flower :5555 (STORAGE=s3)
	$(DEVSTACK) run --storage=$(STORAGE)

api: $(STAMP) ## Flask development server on 127.0.0.1:8000
	$(WITH_STACK) $(FLASK) run --host 127.0.0.1 --port 8000 --debug

worker: $(STAMP) ## Celery worker (with beat; WORKER_BEAT= to run without)
	@mkdir -p "$(DATA_DIR)"
	WORKER_METRICS_PORT=$(WORKER_METRICS_PORT) WORKER_METRICS_ADDR=$${WORKER_METRICS_ADDR:-127.0.0.1} \
		$(WITH_STACK) $(CELERY) worker $(WORKER_BEAT) --loglevel=INFO -E --concurrency=$(WORKER_CONCURRENCY)

beat: $(STAMP) ## standalone Celery beat
	@mkdir -p "$(DATA_DIR)"
	$(WITH_STACK) $(CELERY) beat --loglevel=INFO -s "$(DATA_DIR)/celerybeat-schedule"

# Basic auth as under `make run`: devstack sets FLOWER_BASIC_AUTH (generated under DATA_DIR
# when unset), and Flower reads it from the environment.
flower: $(STAMP) ## Flower on 127.0.0.1:5555 (basic auth: FLOWER_BASIC_AUTH)
	$(WITH_STACK) $(CELERY) flower --address=127.0.0.1 --port=5555

migrate: $(STAMP) ## alembic upgrade head
	$(WITH_STACK) $(PY) -m alembic upgrade head

revision: $(STAMP) ## new migration: MSG="add x"
	@test -n "$(MSG)" || { echo 'usage: make revision MSG="what changed"' >&2; exit 2; }
	$(WITH_STACK) $(PY) -m alembic revision --autogenerate -m "$(MSG)"

# The API key is the last line of the output; the recipes echo nothing after it.
tenant: $(STAMP) ## create a tenant, print its API key last: NAME=acme
	@test -n "$(NAME)" || { echo 'usage: make tenant NAME=acme' >&2; exit 2; }
	@$(WITH_STACK) sh -c '$(PY) -m alembic upgrade head 2>/dev/null && $(FLASK) tenant create "$$0"' "$(NAME)"

revoke-key: $(STAMP) ## revoke an API key: PREFIX=...
	@test -n "$(PREFIX)" || { echo 'usage: make revoke-key PREFIX=<key prefix>' >&2; exit 2; }
	@$(WITH_STACK) $(FLASK) tenant revoke-key "$(PREFIX)"

resync: $(STAMP) ## sync a dataset again: ID=...
	@test -n "$(ID)" || { echo 'usage: make resync ID=<dataset id>' >&2; exit 2; }
	@$(WITH_STACK) $(FLASK) sync resync "$(ID)"

resync-failed: $(STAMP) ## sync every failed dataset again
	@$(WITH_STACK) $(FLASK) sync resync-failed

bench: $(STAMP) ## benchmark (python -m bench.run)
	$(PY) -m bench.run

bench-hostile: $(STAMP) ## time and peak memory of each hostile input (python -m bench.hostile)
	$(PY) -m bench.hostile

CORPUS_SCALE ?= 20
bench-corpus: $(STAMP) ## rows, time and peak memory per file of the generated corpus (CORPUS_SCALE=20)
	$(PY) -m bench.corpus --scale $(CORPUS_SCALE)

EXCEL_ROWS ?= 1450000
bench-excel: $(STAMP) ## time and peak memory of converting a ~100 MB .xlsx, per reader (EXCEL_ROWS=1450000)
	$(PY) -m bench.excel --rows $(EXCEL_ROWS)

test: $(STAMP) ## the suite but the fault injection; browser tests need chromium (embedded servers, or TEST_DATABASE_URL / TEST_REDIS_URL)
	$(PY) -m pytest -q tests --ignore=tests/faults

screenshots: $(STAMP) ## the console's pages as PNGs into docs/screenshots (needs chromium)
	$(PY) -m pytest -q tests/browser/screenshots.py

test-unit: $(STAMP) ## unit tests
	$(PY) -m pytest -q tests/unit

test-faults: $(STAMP) ## fault-injection suite: kills workers, restarts Redis and PostgreSQL
	$(PY) -m pytest -q tests/faults

lint: $(STAMP) ## ruff (lint and format check), mypy, import-linter contracts of the layers
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy service tasks schemas
	$(VENV)/bin/lint-imports

format: $(STAMP) ## ruff: fix what it can and format
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

stop: ## stop embedded servers left running under DATA_DIR
	@if [ -x $(PY) ]; then $(DEVSTACK) stop; fi

clean: ## remove caches (keeps .data and .venv; stops nothing)
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
	rm -rf .pytest_cache

clean-data: stop ## stop embedded servers, then delete DATA_DIR
	rm -rf "$(DATA_DIR)"
