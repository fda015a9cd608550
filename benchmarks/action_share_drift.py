"""How much a trained model's action shares move with the market: one contiguous walk of
a bundle through its whole series (training and held-out bars), the shares per calendar
year, and how often a window as long as the held-out span meets the guide's criteria.

The criteria (``train.criteria``) are bands of action shares: HOLD 80-90% of flat bars,
BUY and SELL 5-10% each, PM 40-60% of in-position bars. Calibration
(``train.calibration``) sets the shares once, on bars before the held-out span. This
script shows how far a fixed policy's shares wander from year to year afterwards, which
bounds how reliably any fixed calibration can pass on unseen years.

The walk starts flat at the first decision bar and trades on (``train.backtest.walk``'s
rules); a window's shares pool its bars' decisions, as validation pools its episodes'.

    python benchmarks/action_share_drift.py runs/sp500_cf20_seed0/fold0_seed0 [BUNDLE ...]
        [--window-bars N]   # default: the bundle's held-out span (card's data)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from env.bars import load_bars  # noqa: E402
from env.config import N_ACTIONS, WARMUP_BARS  # noqa: E402
from env.trading_env import EnvConfig, TradingEnv  # noqa: E402
from train.backtest import walk_env  # noqa: E402
from train.criteria import evaluate_criteria  # noqa: E402
from train.evaluation import RunResult  # noqa: E402
from train.validation import load_policy, policies_for  # noqa: E402


def walk_decisions(bundle: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """``(card, times, sides, actions)`` of one deterministic walk through the series."""
    card = json.loads((bundle / "model.json").read_text(encoding="utf-8"))
    config = EnvConfig.from_dict(card["env"])
    data = card["data"]
    bars = load_bars(
        data["source"],
        contract=config.instrument,
        data_timezone=data.get("data_timezone"),
    )
    model, vecnorm = load_policy(
        bundle / "model.zip", bundle / "vecnormalize.pkl", TradingEnv(bars, config)
    )
    policy = policies_for(model, vecnorm, 0)["model"]
    env = walk_env(bars, config)
    obs, _ = env.reset(options={"start": WARMUP_BARS - 1})
    sides, actions = [], []
    done = False
    while not done:
        sides.append(env.book.side)
        action = int(policy(obs[None, :], env.action_masks()[None, :])[0])
        actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    first = WARMUP_BARS - 1
    times = bars.time[first : first + len(actions)]
    return card, times, np.asarray(sides), np.asarray(actions)


def counts(sides: np.ndarray, actions: np.ndarray) -> RunResult:
    flat = np.bincount(actions[sides == 0], minlength=N_ACTIONS)
    in_position = np.bincount(actions[sides != 0], minlength=N_ACTIONS)
    return RunResult(flat_counts=flat, position_counts=in_position)


def shares_row(result: RunResult) -> str:
    values = {c.name: c.value for c in evaluate_criteria(result)}
    return (
        f"{result.flat_counts.sum():5d} {values['hold_flat']:6.1f} {values['buy_flat']:5.1f} "
        f"{values['sell_flat']:5.1f} | {result.position_counts.sum():5d} "
        f"{values['pm_in_position']:6.1f}"
    )


def report(bundle: Path, window_bars: int | None) -> None:
    card, times, sides, actions = walk_decisions(bundle)
    data = card["data"]
    print(
        f"\n{bundle}  ({data['source']}; calibration from "
        f"{str(data.get('calibration_start', '-'))[:10]}, held out from "
        f"{str(data.get('holdout_start', '-'))[:10]})"
    )
    print("year   flat  HOLD%  BUY%  SELL% | inpos   PM%  bars")
    first = WARMUP_BARS - 1
    holdout_index = int(data.get("holdout_start_index", first + len(times))) - first
    # The bars the policy never learned from: the calibration span (kept out of
    # learning) and the held-out span.
    unseen_index = int(data.get("calibration_start_index", holdout_index + first)) - first
    years = np.array([str(t)[:4] for t in times])
    indices = np.arange(len(times))
    for year in sorted(set(years)):
        chosen = years == year
        result = counts(sides[chosen], actions[chosen])
        year_start = int(indices[chosen][0])
        part = (
            "held out"
            if year_start >= holdout_index
            else "calibration"
            if year_start >= unseen_index
            else "learned"
        )
        print(f"{year} {shares_row(result)}  {part}")
    span = window_bars or int(data.get("holdout_end_index", 0)) - int(
        data.get("holdout_start_index", 0)
    )
    if span <= 0:
        return
    # Windows as long as the held-out span, a quarter of it apart, over unseen bars.
    starts = range(unseen_index, len(times) - span + 1, max(span // 4, 1))
    passed, hold = 0, []
    for start in starts:
        result = counts(sides[start : start + span], actions[start : start + span])
        criteria = evaluate_criteria(result)
        passed += all(c.passed for c in criteria)
        hold.append(criteria[0].value)
    held = counts(sides[holdout_index:], actions[holdout_index:])
    verdict = "passes" if all(c.passed for c in evaluate_criteria(held)) else "fails"
    print(f"the held-out span, walked once: {shares_row(held)} ({verdict})")
    if starts:
        print(
            f"windows of {span} bars over bars it never learned from: {passed} of "
            f"{len(starts)} meet every criterion; HOLD% of flat bars "
            f"{min(hold):.1f}-{max(hold):.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--window-bars", type=int, default=None)
    args = parser.parse_args()
    for bundle in args.bundles:
        report(bundle, args.window_bars)


if __name__ == "__main__":
    main()
