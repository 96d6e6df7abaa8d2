# click2call — `make run` starts the server, `make test` installs everything and runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint unit integration e2e bench demo system-deps browser-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests and the demo use as real peers (the tests start their own
# throwaway PostgreSQL cluster with initdb/pg_ctl: tests/postgres_cluster.py).
system-deps:
	@command -v sipp >/dev/null 2>&1 || { \
	  echo "installing sip-tester (SIPp) with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester >/dev/null; }
	@dpkg -s kamailio kamailio-tls-modules >/dev/null 2>&1 || { \
	  echo "installing kamailio (a record-routing proxy and TLS peer for the SIP tests) with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    kamailio kamailio-tls-modules >/dev/null; }
	@command -v baresip >/dev/null 2>&1 || { \
	  echo "installing baresip (an auto-answering agent phone for the SIP tests) with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    baresip-core >/dev/null; }
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  echo "installing postgresql with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# The browser the end-to-end tests drive (Playwright uses it; never `playwright install`).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: $(STAMP)
	$(BIN)/click2call serve

demo: $(STAMP) system-deps
	$(BIN)/click2call demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: $(STAMP) system-deps browser-deps lint
	$(BIN)/pytest -q

unit: $(STAMP) system-deps
	$(BIN)/pytest -q tests/unit

integration: $(STAMP) system-deps
	$(BIN)/pytest -q tests/integration

e2e: $(STAMP) system-deps browser-deps
	$(BIN)/pytest -q tests/e2e

bench: $(STAMP) system-deps
	@command -v wrk >/dev/null 2>&1 || apt-get install -y -qq wrk >/dev/null
	$(BIN)/python -m bench.spine
	$(BIN)/python -m bench.sip
	$(BIN)/python -m bench.store
	$(BIN)/python -m bench.ami
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.history
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
