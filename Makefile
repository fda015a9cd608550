# The same commands CI and the README use.
.PHONY: install test lint typecheck check bench

install:
	python -m pip install -e ".[test]"

test:
	python -m pytest

lint:
	ruff check .
	ruff format --check env bridge train ai_trading_bridge.py

typecheck:
	mypy env bridge train ai_trading_bridge.py

check: lint typecheck test

bench:
	python benchmarks/env_steps.py
