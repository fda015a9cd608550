# The commands the README and CI use. `make test` is the README's test command.
.PHONY: install test lint typecheck check bench

PYTHON ?= python

install:
	$(PYTHON) -m pip install -e ".[test]"

# The NinjaTrader client's tests compile C# with Debian's mono-mcs (no NinjaTrader needed).
test: install
	@command -v mcs >/dev/null 2>&1 && command -v mono >/dev/null 2>&1 || { \
	  echo "installing mono-mcs (C# compiler) for the NinjaTrader client's tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends mono-mcs >/dev/null; }
	$(PYTHON) -m pytest

lint:
	ruff check .
	ruff format --check .

typecheck:
	mypy env bridge train ai_trading_bridge.py

check: lint typecheck test

bench:
	$(PYTHON) benchmarks/env_steps.py
	$(PYTHON) benchmarks/bridge_latency.py
	$(PYTHON) benchmarks/train_throughput.py
