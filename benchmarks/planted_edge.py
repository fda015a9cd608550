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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def run(steps: int, seed: int, n_bars: int, edge: float, out: Path) -> dict:
    from train.backtest import backtest
    from train.config import TrainConfig
    from train.evaluation import (
        PolicyFn,
        RandomValidPolicy,
        always_flat_policy,
        momentum_policy,
    )
    from train.planted_edge import expected_r_per_trade, oracle_policy, planted_edge_bars
    from train.training import DataSplit, train
    from train.validation import load_policy, policies_for

    planted = planted_edge_bars(n_bars=n_bars, edge=edge, seed=seed)
    split = DataSplit(planted.bars, round(n_bars * 0.8))
    config = TrainConfig(timesteps=steps, seed=seed, checkpoint_every=0, eval_every=0)
    started = time.perf_counter()
    bundle = train(config, out, progress_bar=False, validate_episodes=0, data=(split, "planted"))
    duration = time.perf_counter() - started
    from env.trading_env import EnvConfig, TradingEnv

    env_config = EnvConfig.from_dict(bundle.card["env"])
    holdout = split.holdout
    model, vecnorm = load_policy(bundle.model_path, bundle.vecnorm_path, TradingEnv(holdout))
    policies: dict[str, PolicyFn] = {
        "model": policies_for(model, vecnorm, seed)["model"],
        "oracle": oracle_policy,
        "always_flat": always_flat_policy,
        "random_valid": RandomValidPolicy(seed),
        "momentum": momentum_policy,
    }
    section, walks = backtest(policies, holdout, env_config, seed=seed)
    stats = section["policies"]
    oracle_trades, oracle_r = planted.oracle_r(split.split, len(planted.bars) - 2)
    baselines = ("always_flat", "random_valid", "momentum")
    model_r = stats["model"]["net_pnl_r"]
    flat_bars = walks["model"].actions.size  # decisions (flat or not)
    return {
        "seed": seed,
        "steps": steps,
        "train_s": round(duration, 1),
        "edge": edge,
        "expected_oracle_r_per_trade": round(expected_r_per_trade(edge), 4),
        "oracle_known": {"trades": oracle_trades, "net_r": round(oracle_r, 3)},
        "oracle_walk": {"trades": stats["oracle"]["trades"], "net_r": stats["oracle"]["net_pnl_r"]},
        "model": {
            k: stats["model"][k]
            for k in (
                "trades",
                "net_pnl_r",
                "mean_r_per_trade",
                "win_rate_pct",
                "sharpe_annualised",
            )
        },
        "baselines_net_r": {b: stats[b]["net_pnl_r"] for b in baselines},
        "share_of_oracle_r": round(model_r / oracle_r, 4) if oracle_r else None,
        "beats_every_baseline": all(model_r > stats[b]["net_pnl_r"] for b in baselines),
        "decisions": flat_bars,
        "shaping": bundle.card.get("shaping", {}).get("final_terms"),
        "holdout_span": section["span"],
    }


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
            result = run(args.steps, seed, args.n_bars, args.edge, Path(tmp))
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
