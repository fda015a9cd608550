"""Raw TradingEnv throughput: single process, random valid actions.

Usage: python benchmarks/env_steps.py [--steps N] [--repeats R]

Random actions are drawn up front (an index into the valid ones, so the policy costs the
loop next to nothing); the timed loop is step + reset on termination, as a vectorised
env's worker would run it. Target (SPEC.md): at least 200,000 steps/s.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from env import TradingEnv


def run(steps: int, seed: int) -> float:
    env = TradingEnv()
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    flat_choice = rng.integers(0, 3, steps).tolist()  # HOLD/BUY/SELL: valid when flat
    any_choice = rng.integers(0, 6, steps).tolist()  # every action is valid in a position
    book = env.book
    step, reset = env.step, env.reset
    start = time.perf_counter()
    for i in range(steps):
        _, _, terminated, truncated, _ = step(any_choice[i] if book.side else flat_choice[i])
        if terminated or truncated:
            reset()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rates = [run(args.steps, seed) for seed in range(args.repeats)]
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    for i, rate in enumerate(rates):
        print(f"run {i}: {rate:,.0f} steps/s")
    best, median = max(rates), float(np.median(rates))
    print(f"env steps/s: median {median:,.0f}, best {best:,.0f} (target >= 200,000)")


if __name__ == "__main__":
    main()
