"""A synthetic series with a planted edge of known strength, and its oracle.

Can the pipeline learn an edge when one exists? On this series it can be told exactly
what there is to learn:

- Prices move one point every bar (4 ticks of NQ), up or down; each bar's wicks add
  half a point on both sides, so every true range is 2.0 points and ATR(14) is exactly
  2.0 at every bar. With the default bracket (stop 1 ATR, target 2 ATR) a trade's
  outcome in R is therefore fixed by the path alone.
- Away from signals the direction is a fair coin: no edge, and every trade pays costs.
- A *signal bar* (each eligible bar with probability ``signal_rate``) carries
  ``volume_spike`` x the normal volume (the ``log_volume_ratio`` feature jumps) and its
  body shows the signal's direction. With probability ``edge`` the next four bars go
  that way (an entry at the next open reaches its 2-ATR target on the fourth bar), else
  they go the other way (the 1-ATR stop is hit on the second bar). No signal falls
  inside another's four bars or the bar after them.
- Bar times are CME Globex one-minute sessions (``env.synthetic.session_minutes``), and
  no signal falls where the env refuses entries or flattens at the session close
  (``env.trading_env.session_rules``), so no oracle trade is cut short.

The oracle enters in the signal's direction on every signal bar and otherwise holds.
Under the execution model (``env.execution``: fill at the next open plus one tick of
slippage, stop fills less one tick, $2.50 commission per side) its trades are worth
exactly :data:`WIN_R` or :data:`LOSS_R`, so its net R on any span is known from the
generator's record of the signals, and in expectation
``edge x WIN_R + (1 - edge) x LOSS_R`` per trade (0.8: +1.125 R).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from env.bars import Bars
from env.config import MARKET_FEATURE_COUNT, WINDOW_SIZE, Action
from env.instruments import get_instrument

STEP = 1.0  # points per bar
WICK = 0.5  # points above and below the body
ATR = STEP + 2 * WICK  # every true range
PATH_BARS = 4  # bars after a signal that follow (or fade) it
START_PRICE = 20000.0
BASE_VOLUME = 1000.0


def _trade_r(points: float) -> float:
    nq = get_instrument("NQ")
    dollars = points * nq.point_value - 2 * nq.commission_per_side
    return dollars / (ATR * nq.point_value)


# Entry fills one tick above the signal close (long); a win exits at the target
# (close + 2 ATR), a loss at the stop (close - 1 ATR) less one tick of slippage.
WIN_R = _trade_r(2 * ATR - 0.25)  # 3.75 points - $5 commission = +1.75 R
LOSS_R = _trade_r(-ATR - 0.5)  # -2.5 points - $5 commission = -1.375 R


@dataclass(frozen=True)
class PlantedEdge:
    """The series and its ground truth: ``signal_bars`` (indices), their ``direction``
    (+1/-1) and whether each one ``won`` (its path followed the signal)."""

    bars: Bars
    signal_bars: np.ndarray
    direction: np.ndarray
    won: np.ndarray
    edge: float

    def oracle_r(self, first_decision: int, last_decision: int) -> tuple[int, float]:
        """Trades and net R of the oracle deciding on bars ``first..last`` inclusive."""
        inside = (self.signal_bars >= first_decision) & (
            self.signal_bars <= last_decision - PATH_BARS
        )
        wins = int(self.won[inside].sum())
        losses = int(inside.sum()) - wins
        return wins + losses, wins * WIN_R + losses * LOSS_R


def expected_r_per_trade(edge: float) -> float:
    return edge * WIN_R + (1.0 - edge) * LOSS_R


def planted_edge_bars(
    n_bars: int = 30_000,
    edge: float = 0.8,
    signal_rate: float = 0.15,
    volume_spike: float = 6.0,
    seed: int = 0,
) -> PlantedEdge:
    """Generate the series (1-minute Globex bars from the session of 2024-01-08)."""
    if not 0.0 <= edge <= 1.0:
        raise ValueError(f"edge must be in [0, 1], got {edge}")
    from datetime import datetime

    from env.synthetic import session_minutes
    from env.trading_env import EnvConfig, session_rules

    days = -(-n_bars // (23 * 60)) + 3  # holidays shorten a few sessions
    times = session_minutes(datetime(2024, 1, 8, 16, 0), days)[:n_bars]
    zeros = np.zeros(n_bars)
    flatten, no_entry = session_rules(Bars(times, zeros, zeros, zeros, zeros, zeros), EnvConfig())
    near_close = np.asarray(flatten) | np.asarray(no_entry)
    rng = np.random.default_rng(seed)
    steps = rng.choice([-STEP, STEP], size=n_bars)
    volume = BASE_VOLUME * np.exp(rng.normal(0.0, 0.1, n_bars))
    signals, directions, outcomes = [], [], []
    t = 30  # leave the indicators' warm-up alone
    while t < n_bars - PATH_BARS - 2:
        if near_close[t : t + PATH_BARS + 2].any():
            t += 1
            continue
        if rng.random() < signal_rate:
            side = 1 if rng.random() < 0.5 else -1
            won = rng.random() < edge
            steps[t] = side * STEP
            volume[t] *= volume_spike
            steps[t + 1 : t + 1 + PATH_BARS] = (side if won else -side) * STEP
            signals.append(t)
            directions.append(side)
            outcomes.append(won)
            t += PATH_BARS + 2
        else:
            t += 1
    close = START_PRICE + np.cumsum(steps)
    open_ = close - steps
    high = np.maximum(open_, close) + WICK
    low = np.minimum(open_, close) - WICK
    bars = Bars(
        times,
        open_,
        high,
        low,
        close,
        np.round(volume),
        f"planted-edge:n={n_bars}:edge={edge}:rate={signal_rate}:seed={seed}",
    )
    return PlantedEdge(
        bars, np.asarray(signals), np.asarray(directions), np.asarray(outcomes, bool), edge
    )


_LAST = (WINDOW_SIZE - 1) * MARKET_FEATURE_COUNT
_BODY = _LAST + 2  # body_atr of the bar just closed
_VOLUME = _LAST + 8  # log_volume_ratio of the bar just closed
# Spikes read ~1.0-1.6 (the 20-bar volume average includes them); noise stays < 0.3.
SIGNAL_THRESHOLD = float(np.log(2.0))


def oracle_policy(obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """On a signal bar (volume above twice its 20-bar average) and flat: enter in the
    direction of its body; else HOLD."""
    flat = masks[:, Action.MOVE_TO_BE] == 0
    signal = flat & (obs[:, _VOLUME] > SIGNAL_THRESHOLD) & (masks[:, Action.BUY] > 0)
    actions = np.zeros(len(obs), np.int64)
    actions[signal & (obs[:, _BODY] > 0)] = Action.BUY
    actions[signal & (obs[:, _BODY] < 0)] = Action.SELL
    return actions


def learn_the_edge(steps: int, seed: int, n_bars: int, edge: float, out: Path) -> dict[str, Any]:
    """Train with `train`'s defaults (``steps`` steps, ``seed``) on the first 80% of a
    planted-edge series of ``n_bars`` bars, and walk the held-out 20% once with the
    model, the oracle and the baselines (``train.backtest``).

    Returns:
        The figures ``benchmarks/planted_edge.py`` prints: the oracle's known net R, the
        model's, the share of the oracle's it recovered (``share_of_oracle_r``), each
        baseline's, and ``beats_every_baseline``.
    """
    from train.backtest import backtest
    from train.config import TrainConfig
    from train.evaluation import (
        PolicyFn,
        RandomValidPolicy,
        always_flat_policy,
        momentum_policy,
    )
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
