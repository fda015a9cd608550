# The commands the README and CI use. `make test` is the README's test command.
.PHONY: install test lint typecheck check bench mono

# Inside a virtual environment (CI's, or one you activated) its python; outside one, the
# repository's own .venv, made on first use: Debian 12 and Ubuntu 23.04+ refuse
# `pip install` into the system's Python (externally-managed-environment).
VENV_PYTHON := .venv/bin/python
ifdef VIRTUAL_ENV
PYTHON ?= python
else
PYTHON ?= $(VENV_PYTHON)
endif

$(VENV_PYTHON):
	python3 -m venv .venv

install: $(filter $(VENV_PYTHON),$(PYTHON))
	$(PYTHON) -m pip install -e ".[test]"

# The NinjaTrader client's tests compile C# with Mono's mcs and run it with mono (no
# NinjaTrader needed). As root (CI) with apt-get, install Debian's mono-mcs; otherwise
# stop with what to install and how.
mono:
	@command -v mcs >/dev/null 2>&1 && command -v mono >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing mono-mcs (C# compiler) for the NinjaTrader client's tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends mono-mcs >/dev/null; \
	  else \
	    echo "make test: the NinjaTrader client's tests need Mono (mcs and mono). Install it:"; \
	    echo "  Debian/Ubuntu: sudo apt-get install -y --no-install-recommends mono-mcs"; \
	    echo "  macOS:         brew install mono"; \
	    echo "then run make test again, or run the tests without the NinjaTrader ones:"; \
	    echo "  $(PYTHON) -m pytest -k 'not ninjatrader'"; \
	    exit 1; \
	  fi; } >&2

test: install mono
	$(PYTHON) -m pytest

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck: install
	$(PYTHON) -m mypy env bridge train ai_trading_bridge.py

check: lint typecheck test

bench:
	$(PYTHON) benchmarks/env_steps.py
	$(PYTHON) benchmarks/bridge_latency.py
	$(PYTHON) benchmarks/train_throughput.py
