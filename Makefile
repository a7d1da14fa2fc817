# The two commands a newcomer needs: `make run` and `make test`.
# Everything else here is what they are made of.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# pyenv picks the version in .python-version inside the checkout.
PYTHON ?= python3

.PHONY: run demo serve bench-dashboard test test-sqlite test-postgres lint bench install migrate browser clean

# Also remade when this file changes, since it names the extras: site for this
# repository's site, dev for the tests and linters, bench for the peers the worker
# benchmark (and so make test) runs.
$(VENV)/.installed: pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "Python 3.12+ is needed (found " + sys.version.split()[0] + "); see .python-version")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[site,dev,bench]'
	@touch $@

install: $(VENV)/.installed

migrate: install
	$(PY) manage.py migrate --no-input

## Serve the site on the embedded SQLite database at http://127.0.0.1:8000/
run: migrate
	@echo
	@echo "  EntroQ on http://127.0.0.1:8000/  (SQLite database: db.sqlite3)"
	@echo "  First account: $(PY) manage.py createsuperuser   (or: make demo)"
	@echo
	@# The dashboard's bulk runs need a worker of their own.
	@trap 'kill $$(jobs -p) 2>/dev/null' EXIT; \
	$(PY) manage.py eqworker --handler queues.bulk.work --queue entroq/bulk & \
	$(PY) manage.py runserver 127.0.0.1:8000

## The dashboard alive: sample queues, a feeder, two workers that fail now and then.
## Log in as demo / demo. Ctrl-C stops it all.
demo: migrate
	$(PY) manage.py eqdemo --user demo --password demo
	@echo
	@echo "  EntroQ demo on http://127.0.0.1:8000/  (log in as demo / demo)"
	@echo
	@trap 'kill $$(jobs -p) 2>/dev/null' EXIT; \
	$(PY) manage.py eqdemo --feed & \
	$(PY) manage.py eqworker --handler queues.demo.work --queue emails/send \
	  --queue images/resize --queue billing/charge --max-attempts 3 --retry-delay 5 \
	  --concurrency 3 & \
	$(PY) manage.py eqworker --handler queues.bulk.work --queue entroq/bulk & \
	$(PY) manage.py runserver 127.0.0.1:8000

## Production serving: gunicorn, debugging off, static files from whitenoise, JSON logs.
## Needs DJANGO_SECRET_KEY and DJANGO_ALLOWED_HOSTS (and DATABASE_URL for PostgreSQL).
serve: install
	@[ -n "$$DJANGO_SECRET_KEY" ] && [ -n "$$DJANGO_ALLOWED_HOSTS" ] || { \
	  echo "make serve needs DJANGO_SECRET_KEY and DJANGO_ALLOWED_HOSTS; for example:"; \
	  echo "  export DJANGO_SECRET_KEY=\$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))')"; \
	  echo "  export DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost"; exit 2; }
	DJANGO_DEBUG=0 $(PY) manage.py collectstatic --no-input -v 0
	DJANGO_DEBUG=0 $(PY) manage.py migrate --no-input
	DJANGO_DEBUG=0 $(VENV)/bin/gunicorn -c entroq_site/gunicorn.conf.py entroq_site.wsgi

## Every test on SQLite and on a throwaway PostgreSQL cluster, then the linters.
test: test-sqlite test-postgres lint

## Chromium for the browser tests: Debian's package, installed when root (as in CI).
browser:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || { \
	  echo "installing Chromium (apt-get install chromium)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q && apt-get install -y -q chromium; }; }
	@command -v chromium >/dev/null || echo "Chromium is missing: browser tests will skip (sudo apt-get install chromium)"

test-sqlite: install browser
	@mkdir -p var
	env -u DATABASE_URL $(PY) -m pytest -m "not postgres" $(PYTEST_ARGS)

test-postgres: install browser
	$(PY) scripts/pgcluster.py --fast -- $(PY) -m pytest -m "not sqlite" $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .

# QUICK=1 runs each benchmark's quick mode: seconds that prove it works, measuring
# nothing (tests/test_bench.py runs them in make test).
BENCH_QUICK = $(if $(QUICK),--quick)

## The task lifecycle against raw SQL, worker processes against the peers, the HTTP
## API against the in-process client and under load, then what an API listing of large
## values costs a server process; each on a cluster it starts.
bench: install
	$(PY) bench/lifecycle.py $(BENCH_QUICK) $(BENCH_ARGS)
	$(PY) bench/workers.py $(BENCH_QUICK) $(WORKERS_ARGS)
	$(PY) bench/http_api.py $(BENCH_QUICK) $(HTTP_ARGS)
	$(PY) bench/listing_memory.py $(BENCH_QUICK)

## The dashboard's pages on 1,000,000 tasks in 1,000 queues (a PostgreSQL cluster it starts).
bench-dashboard: install
	$(PY) bench/dashboard.py $(BENCH_QUICK) $(DASHBOARD_ARGS)

clean:
	rm -rf $(VENV) var test-artifacts .mypy_cache .ruff_cache .pytest_cache
