"""Time to a validated model: the guide's literal set-up against the `train` command.

Both train MaskablePPO with the guide's hyperparameters (lr 3e-4, 2048 transitions per
update, batch 64, 10 epochs, ...) on the same synthetic training bars for the same number
of steps, each in a fresh process (so neither inherits the other's torch settings), and
both are then validated on the same held-out bars with ``--validate-episodes`` episodes.

- guide: section 2 of the retraining guide verbatim apart from the env class: one env,
  ``ActionMasker`` + ``DummyVecEnv`` + ``VecNormalize``, torch defaults, the guide's
  reward table (our ``seed`` preset), then ``validate`` on its two files.
- train: the whole ``ai-trading-bridge train`` command with its defaults (8 envs,
  one torch thread, the lean MaskablePPO update of ``train.ppo``, the ``constrained``
  preset) and the same steps, including its own post-training validation.
  ``--train-args "--n-envs 16"`` passes options on to it.

Prints steps/s of the training part, their ratio, each whole command's wall clock, the
wall clock to a passing model (or that none passed within the budget), and the projected
time for the guide's 5M steps against the 20-minute target.

Usage: python benchmarks/train_throughput.py [--steps 32768] [--validate-episodes 200]
       [--train-args "..."] [--skip-guide]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIVE_MILLION = 5_000_000
TARGET_MINUTES = 20.0  # 5M steps on the 2-core reference machine


def _guide(steps: int, out: Path) -> dict:
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.wrappers import ActionMasker
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from env.trading_env import EnvConfig, TradingEnv
    from train.training import DataSplit, load_data

    bars, _ = load_data(None)
    train_bars = DataSplit(bars, round(len(bars) * 0.8)).train

    def mask_fn(env):
        return env.action_masks()

    masked = ActionMasker(TradingEnv(train_bars, EnvConfig(reward="seed")), mask_fn)
    dummy = DummyVecEnv([lambda: masked])
    env = VecNormalize(dummy, norm_obs=True, norm_reward=False, clip_obs=10.0, clip_reward=10.0)
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
    started = time.perf_counter()
    model.learn(steps)
    train_s = time.perf_counter() - started
    model.save(str(out / "model.zip"))
    env.save(str(out / "vecnormalize.pkl"))
    return {"train_s": train_s}


def _run(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 3):  # 3: trained, validation failed (a result here)
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return wall, done.stdout


def _guide_row(
    steps: int, guide_dir: Path, cli: list[str], episodes: str
) -> tuple[float, float, bool]:
    """The guide's set-up in a fresh process, then `validate` on its two files."""
    wall_train, out = _run(
        [sys.executable, __file__, "--steps", str(steps), "--only-guide", str(guide_dir)]
    )
    guide_train_s = json.loads(out.strip().splitlines()[-1])["train_s"]
    wall_validate, _ = _run(
        [
            *cli,
            "validate",
            "--model",
            str(guide_dir / "model.zip"),
            "--vecnorm",
            str(guide_dir / "vecnormalize.pkl"),
            "--episodes",
            episodes,
            "--report-dir",
            str(guide_dir / "validation"),
        ]
    )
    report = json.loads((guide_dir / "validation" / "report.json").read_text())
    return guide_train_s, wall_train + wall_validate, bool(report["passed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32768, help="training steps per set-up")
    parser.add_argument("--validate-episodes", type=int, default=200)
    parser.add_argument("--train-args", default="", help="extra options for `train`")
    parser.add_argument("--skip-guide", action="store_true", help="time `train` only (no ratio)")
    parser.add_argument("--only-guide", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only_guide:
        print(json.dumps(_guide(args.steps, Path(args.only_guide))))
        return

    cli = [sys.executable, "-c", "from ai_trading_bridge import main; main()"]
    episodes = str(args.validate_episodes)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        guide_dir, train_dir = Path(tmp, "guide"), Path(tmp, "train")
        guide_dir.mkdir()
        if not args.skip_guide:
            rows["guide"] = _guide_row(args.steps, guide_dir, cli, episodes)

        wall, _ = _run(
            [
                *cli,
                "train",
                "--out",
                str(train_dir),
                "--timesteps",
                str(args.steps),
                "--validate-episodes",
                episodes,
                "--eval-every",
                "0",
                "--checkpoint-every",
                "0",
                "--no-progress",
                *shlex.split(args.train_args),
            ]
        )
        card = json.loads((train_dir / "model.json").read_text())
        rows["train"] = (card["duration_s"], wall, bool(card["validation"]["passed"]))

    print(f"steps per set-up: {args.steps}; validation: {episodes} held-out episodes")
    if args.train_args:
        print(f"train options: {args.train_args}")
    print(f"{'set-up':>7} {'train s':>8} {'steps/s':>8} {'command s':>10}  passed  5M steps")
    rates = {}
    for name, (train_s, wall, passed) in rows.items():
        rates[name] = args.steps / train_s
        minutes = FIVE_MILLION / rates[name] / 60
        print(
            f"{name:>7} {train_s:8.1f} {rates[name]:8.0f} {wall:10.1f}  {passed!s:<6}"
            f"  {minutes:6.1f} min"
        )
    if "guide" in rates:
        print(f"  ratio: {rates['train'] / rates['guide']:.2f}x steps/s (train / guide)")
    minutes = FIVE_MILLION / rates["train"] / 60
    verdict = "within" if minutes < TARGET_MINUTES else "over"
    print(f"  train, 5M steps: {minutes:.1f} min, {verdict} the {TARGET_MINUTES:.0f}-minute target")
    for name, (_, wall, passed) in rows.items():
        reached = f"{wall:.0f} s" if passed else f"not within {args.steps} steps"
        print(f"  wall clock to a passing model, {name}: {reached}")


if __name__ == "__main__":
    main()
