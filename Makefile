# make run   — set everything up and start the API, the stream server, workers, beat and Flower (Ctrl-C stops all)
# make test  — set everything up and run the whole test suite against PostgreSQL and Redis
# make bench — measure throughput and latency (see BENCHMARKS.md)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REDIS_URL ?= redis://127.0.0.1:6379/0
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/notifier

.PHONY: run test bench bench-stats install install-test install-bench install-browser check-redis check-postgres migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements.txt requirements-test.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $(VENV)/.installed $@

$(VENV)/.installed-bench: requirements.txt requirements-test.txt requirements-bench.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $(VENV)/.installed $(VENV)/.installed-test $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-bench: $(VENV)/.installed-bench

# The browser tests (tests/browser) drive Debian's Chromium through Playwright (executable_path
# /usr/bin/chromium): Debian's packages, never a browser download. Installed when missing (CI runs as root).
install-browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then echo "installing Debian's chromium and chromium-driver"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "The browser tests need Debian's chromium and chromium-driver: run 'sudo apt-get install -y chromium chromium-driver', or make install-browser as root."; exit 1; fi

check-redis: $(VENV)/.installed
	@$(BIN)/python -c "import redis,sys; redis.Redis.from_url('$(REDIS_URL)', socket_connect_timeout=2).ping()" 2>/dev/null \
	  || { echo "Redis is not reachable at $(REDIS_URL): start it (redis-server --daemonize yes) or set REDIS_URL."; exit 1; }

check-postgres: $(VENV)/.installed
	@$(BIN)/python -c "import psycopg; psycopg.connect('$(TEST_DATABASE_URL)'.rsplit('/',1)[0] + '/postgres', connect_timeout=3).close()" 2>/dev/null \
	  || { echo "PostgreSQL is not reachable at $(TEST_DATABASE_URL): start it, or set TEST_DATABASE_URL."; exit 1; }

# The key that signs recipient tokens and sessions (settings.py reads it when SECRET_KEY is not set): random,
# made on the first start, kept across restarts so that tokens and admin sessions stay valid.
var/secret-key:
	@mkdir -p var && umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@.tmp && mv $@.tmp $@

run: check-redis var/secret-key
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py collectstatic --no-input -v 0
	$(BIN)/python manage.py seeddemo
	@echo "API http://127.0.0.1:8000/api/v1/  inbox streams http://127.0.0.1:8001  inbox demo http://127.0.0.1:8000/demo/inbox  admin http://127.0.0.1:8000/admin/  Flower http://127.0.0.1:5555/  metrics http://127.0.0.1:8000/metrics"
	@echo "Demo producer key: $$(cat var/demo-producer-key)   (in another shell: KEY=\$$(cat var/demo-producer-key))"
	@# prometheus-client's multiprocess directory: emptied at each start (its files are the processes' counts).
	rm -rf var/prometheus && mkdir -p var/prometheus
	@# The API listens on 127.0.0.1 here (API_HOST), so /metrics is open to this machine, like Flower. The
	@# stream server has a port of its own (the Procfile's `stream`); the demo's widget opens its stream there.
	REDIS_URL=$(REDIS_URL) NOTIFIER_INBOX_STREAM_URL=$${NOTIFIER_INBOX_STREAM_URL:-http://127.0.0.1:$${STREAM_PORT:-8001}} PROMETHEUS_MULTIPROC_DIR=$(CURDIR)/var/prometheus NOTIFIER_METRICS_PUBLIC=$${NOTIFIER_METRICS_PUBLIC:-1} NOTIFIER_DEMO_PAGES=$${NOTIFIER_DEMO_PAGES:-1} PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/honcho start

test: $(VENV)/.installed-test install-browser check-redis check-postgres
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

# SCENARIO=all (default), smoke, ingest, transactional, naive, push, inbox, campaign or streams; results in
# BENCHMARKS.md, each figure beside its ceilings measured in the same run (bench/ceilings.py). streams: BENCH_STREAMS=10000 (default) live inbox streams on the stream server.
# inbox builds .venv-peer-notifications on its first run (django-notifications-hq needs Django 5.0, see
# bench/peers/requirements-notifications-hq.txt); BENCH_INBOX_ROWS=200000 seeds a small inbox of its own.
# campaign: BENCH_CAMPAIGN_SIZES=100000,1000000 (default; 10000 for a quick run), BENCH_CAMPAIGN_PUSH=100000
# (0: no push run); its users are seeded once with COPY and kept.
SCENARIO ?= all
bench: $(VENV)/.installed-bench check-redis check-postgres
	$(BIN)/python -m bench.run --scenario $(SCENARIO)

# The stats query on 10,000,000 deliveries in a database of its own (notifier_stats_bench, dropped after; about
# 5 GB of disk while it runs): its section of BENCHMARKS.md (bench/stats_query.md). --keep keeps the database.
bench-stats: $(VENV)/.installed-bench check-postgres
	$(BIN)/python -m bench.stats_query $(STATS_ARGS)

clean:
	rm -rf $(VENV) .venv-peer-notifications var .pytest_cache
