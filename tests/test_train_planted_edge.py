"""The planted edge: the series is what its docstring says, and the evaluator recovers
the oracle's known net R exactly on the same contiguous walk as the baselines."""

from __future__ import annotations

import numpy as np
import pytest

from env.config import WARMUP_BARS
from env.trading_env import EnvConfig, TradingEnv
from train.backtest import backtest, walk
from train.evaluation import RandomValidPolicy, always_flat_policy, momentum_policy
from train.planted_edge import (
    ATR,
    LOSS_R,
    WIN_R,
    expected_r_per_trade,
    oracle_policy,
    planted_edge_bars,
)


def test_planted_series_has_constant_atr_and_separable_signals() -> None:
    planted = planted_edge_bars(n_bars=4000, seed=1)
    env = TradingEnv(planted.bars, EnvConfig(episode_bars=100))
    assert np.allclose(env._atr[30:], ATR)
    volume = env.market_features[:, 8]
    late = planted.signal_bars[planted.signal_bars > 40]
    quiet = np.delete(volume, planted.signal_bars)[40:]
    assert volume[late].min() > 0.69 > quiet.max()  # the oracle's threshold, log 2
    assert abs(planted.won.mean() - 0.8) < 0.06  # 4000 bars: ~450 signals
    assert pytest.approx(1.75) == WIN_R and pytest.approx(-1.375) == LOSS_R
    assert expected_r_per_trade(0.8) == pytest.approx(1.125)


@pytest.mark.parametrize(("seed", "edge"), [(0, 0.8), (1, 0.6), (2, 0.5)])
def test_evaluator_recovers_the_oracle_exactly(seed: int, edge: float) -> None:
    planted = planted_edge_bars(n_bars=5000, edge=edge, seed=seed)
    split = 4000
    holdout = planted.bars[split - (WARMUP_BARS - 1) :]
    result = walk(oracle_policy, holdout, EnvConfig())
    trades, net_r = planted.oracle_r(split, len(planted.bars) - 2)
    assert len(result.trade_r) == trades > 50
    assert result.trade_r.sum() == pytest.approx(net_r, abs=1e-9)
    assert set(np.round(result.trade_r, 9)) <= {round(WIN_R, 9), round(LOSS_R, 9)}


def test_oracle_beats_every_baseline_on_the_same_path() -> None:
    planted = planted_edge_bars(n_bars=5000, seed=3)
    holdout = planted.bars[4000 - (WARMUP_BARS - 1) :]
    section, _ = backtest(
        {
            "oracle": oracle_policy,
            "always_flat": always_flat_policy,
            "random_valid": RandomValidPolicy(0),
            "momentum": momentum_policy,
        },
        holdout,
        EnvConfig(),
        resamples=200,
    )
    stats = section["policies"]
    assert stats["oracle"]["mean_r_per_trade"] > 0.8
    assert stats["oracle"]["ci"]["mean_r_per_trade"][0] > 0  # the edge is significant
    for baseline in ("always_flat", "random_valid", "momentum"):
        assert stats["oracle"]["net_pnl_r"] > stats[baseline]["net_pnl_r"] + 50
    assert stats["random_valid"]["net_pnl_r"] < 0  # coin-flip trades pay the costs


def test_train_with_defaults_learns_the_planted_edge_at_a_small_budget(tmp_path) -> None:
    """`train`'s defaults at 1% of their budget (51,200 steps) on a 10,000-bar series:
    the model makes money held out and beats every baseline on the same walk. The
    stated share (at least half the oracle's net R) is for the full budget, measured by
    benchmarks/planted_edge.py (docs/validation.md section 3); here the model recovers
    a smaller part of it (9-20% over seeds 0-2 when this test was written)."""
    from train.planted_edge import learn_the_edge

    result = learn_the_edge(50_000, seed=0, n_bars=10_000, edge=0.8, out=tmp_path / "b")
    assert result["oracle_walk"]["net_r"] == pytest.approx(result["oracle_known"]["net_r"])
    assert result["model"]["trades"] > 50
    assert result["model"]["net_pnl_r"] > 0 and result["beats_every_baseline"]
    assert 0.05 < result["share_of_oracle_r"] < 1.0
