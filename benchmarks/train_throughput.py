"""Training throughput: the project's setup against the guide's literal setup.

Both train MaskablePPO with the guide's hyperparameters (lr 3e-4, 2048 transitions per
update, batch 64, 10 epochs, ...) on the same TradingEnv and data, for the same number of
steps, each in a fresh process so neither inherits the other's torch settings.

- guide:   one env, ``ActionMasker`` + ``DummyVecEnv`` + ``VecNormalize``, torch defaults
           (section 2 of the guide, verbatim apart from the env class).
- project: ``train.training``'s setup: 8 envs in a DummyVecEnv (batched inference while
           collecting, 256 steps each per 2048-transition update), one torch thread, the
           fused Adam kernel, no distribution argument validation.

Usage: python benchmarks/train_throughput.py [--steps 32768]
The SPEC target is a ratio >= 2.5x. Prints steps/s, the ratio and the projected time
for the guide's 5M timesteps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WARMUP_STEPS = 2048
FIVE_MILLION = 5_000_000


def _guide(steps: int) -> float:
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.wrappers import ActionMasker
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from env.trading_env import TradingEnv
    from train.training import DataSplit, load_data

    bars, _ = load_data(None)
    train_bars = DataSplit(bars, round(len(bars) * 0.8)).train

    def mask_fn(env):
        return env.action_masks()

    env = ActionMasker(TradingEnv(train_bars), mask_fn)
    env = DummyVecEnv([lambda: env])
    env = VecNormalize(env, norm_obs=True, norm_reward=False, clip_obs=10.0, clip_reward=10.0)
    model = MaskablePPO(
        policy="MlpPolicy",
        env=env,
        learning_rate=3e-4,
        n_steps=2048,
        batch_size=64,
        n_epochs=10,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.01,
        verbose=0,
        seed=0,
        device="cpu",
    )
    return _timed(model, steps)


def _project(steps: int) -> float:
    from train.config import TrainConfig
    from train.training import (
        configure_torch,
        env_config_for,
        load_data,
        make_vec_env,
        new_model,
        split_bars,
    )

    config = TrainConfig(device="cpu")
    configure_torch(config.torch_threads)
    bars, _ = load_data(None)
    data = split_bars(bars, config.holdout_fraction, config.episode_bars)
    venv = make_vec_env(config, data.train, env_config_for(config))
    return _timed(new_model(config, venv, None), steps)


def _timed(model, steps: int) -> float:
    model.learn(WARMUP_STEPS)  # first update: allocations, lazy imports
    started = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32768, help="timed steps per setup")
    parser.add_argument("--only", choices=["guide", "project"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        rate = (_guide if args.only == "guide" else _project)(args.steps)
        print(json.dumps({"steps_per_s": rate}))
        return
    rates = {}
    for setup in ("guide", "project"):
        out = subprocess.run(
            [sys.executable, __file__, "--only", setup, "--steps", str(args.steps)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rates[setup] = json.loads(out.strip().splitlines()[-1])["steps_per_s"]
    ratio = rates["project"] / rates["guide"]
    print(f"timed steps per setup: {args.steps} (after {WARMUP_STEPS} warm-up steps)")
    for setup, rate in rates.items():
        hours = FIVE_MILLION / rate / 3600
        print(f"{setup:>8}: {rate:8.0f} steps/s   5M steps in {hours:5.2f} h")
    print(f"   ratio: {ratio:.2f}x (target >= 2.5x) {'PASS' if ratio >= 2.5 else 'FAIL'}")


if __name__ == "__main__":
    main()
