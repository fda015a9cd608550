"""Can `train` learn an edge when one exists? The planted-edge benchmark.

Generates the planted-edge series (``train.planted_edge``: a volume-spike signal whose
direction holds with probability ``--edge``), trains with `train`'s defaults (the
``constrained`` preset, the guide's hyperparameters) on its first 80%, and walks the
held-out 20% once with the model, the oracle and the baselines (``train.backtest``).
Prints the oracle's known net R, the share of it the model recovered, and whether the
model beat every baseline.

Usage: python benchmarks/planted_edge.py [--steps 5000000] [--seeds 0 1 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.planted_edge import learn_the_edge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5_000_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-bars", type=int, default=30_000)
    parser.add_argument("--edge", type=float, default=0.8)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    results = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            result = learn_the_edge(args.steps, seed, args.n_bars, args.edge, Path(tmp))
        results.append(result)
        print(
            f"seed {seed}: {args.steps} steps in {result['train_s']:.0f} s; oracle "
            f"{result['oracle_known']['trades']} trades {result['oracle_known']['net_r']:+.1f} R "
            f"(walk {result['oracle_walk']['net_r']:+.1f} R); model "
            f"{result['model']['trades']} trades {result['model']['net_pnl_r']:+.1f} R = "
            f"{result['share_of_oracle_r']:.1%} of the oracle; baselines "
            + ", ".join(f"{k} {v:+.1f}" for k, v in result["baselines_net_r"].items())
            + f"; beats every baseline: {result['beats_every_baseline']}",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
