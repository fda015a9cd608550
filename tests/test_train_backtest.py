"""The contiguous held-out backtest: annualisation by bar period and session, bootstrap
intervals that cover, one walk per policy with the books balanced."""

from __future__ import annotations

import numpy as np
import pytest

from env.bars import Bars
from env.config import WARMUP_BARS, Action
from env.synthetic import default_bars
from env.trading_env import EnvConfig, TradingEnv
from train.backtest import (
    backtest,
    periods_per_year,
    session_bootstrap,
    session_ids,
    sharpe,
    sharpe_interval,
    walk,
)
from train.evaluation import always_flat_policy


def _bars(times: np.ndarray, seed: int = 0) -> Bars:
    rng = np.random.default_rng(seed)
    close = 4000.0 + np.cumsum(rng.normal(0, 5, len(times)))
    close = np.round(close * 4) / 4
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) + 1.0
    low = np.minimum(open_, close) - 1.0
    return Bars(times, open_, high, low, close, np.full(len(times), 1000.0), "test")


def _business_days(n: int) -> np.ndarray:
    days = np.busday_offset("2020-01-02", np.arange(n), roll="forward")
    return (days.astype("datetime64[s]") + np.timedelta64(16, "h")).astype("datetime64[s]")


def test_daily_bars_annualise_by_trading_days() -> None:
    per_year, period, per_session = periods_per_year(_business_days(300))
    assert period == 86_400
    assert per_session == 1
    assert per_year == 252


def test_minute_bars_annualise_by_bars_per_session() -> None:
    bars = default_bars(n_days=4)  # Globex: 23 h sessions of 1-minute bars, 1 h halts
    per_year, period, per_session = periods_per_year(bars.time)
    assert period == 60
    assert per_session == 23 * 60
    assert per_year == 252 * 23 * 60


def test_gapless_series_splits_sessions_at_calendar_days() -> None:
    times = np.datetime64("2024-01-01T00:01:00") + np.arange(3 * 1440) * np.timedelta64(60, "s")
    ids = session_ids(times, 60)
    assert ids[0] == 0 and ids[-1] == 2
    assert np.bincount(ids).tolist() == [1440, 1440, 1440]


def test_sharpe_annualisation_is_sqrt_of_periods() -> None:
    pnl = np.random.default_rng(1).normal(1.0, 2.0, 400)
    per_period = pnl.mean() / pnl.std(ddof=1)
    assert sharpe(pnl, 252) == pytest.approx(per_period * np.sqrt(252), rel=1e-9)
    assert sharpe(np.zeros(10), 252) == 0.0


def test_session_bootstrap_resamples_whole_sessions() -> None:
    """Two sessions, one all +1 and one all -1: a resample of whole sessions totals a
    multiple of the session size; bar-level resampling would not."""
    pnl = np.array([1.0] * 5 + [-1.0] * 5)
    total, _ = session_bootstrap(pnl, np.repeat([0, 1], 5), 200, seed=0)
    assert set(total.tolist()) <= {-10.0, 0.0, 10.0} and len(set(total.tolist())) == 3


def test_sharpe_interval_covers_the_true_value() -> None:
    """90% intervals from iid normal PnL of known Sharpe contain it about 90% of the
    time (binomial 200 draws: 80-97% is far outside chance for a broken interval)."""
    rng = np.random.default_rng(7)
    mu, sigma, n = 0.1, 1.0, 500
    true = mu / sigma * np.sqrt(252)
    covered = 0
    for rep in range(200):
        pnl = rng.normal(mu, sigma, n)
        low, high = sharpe_interval(pnl, 252, resamples=400, seed=rep)
        covered += low <= true <= high
    assert 160 <= covered <= 194, covered


def test_sharpe_interval_by_sessions_covers_the_true_value() -> None:
    rng = np.random.default_rng(8)
    true = 0.1 * np.sqrt(252 * 10)
    groups = np.repeat(np.arange(100), 10)  # 100 sessions of 10 bars
    covered = sum(
        low <= true <= high
        for low, high in (
            sharpe_interval(rng.normal(0.1, 1.0, 1000), 252 * 10, groups, resamples=400, seed=r)
            for r in range(200)
        )
    )
    assert 160 <= covered <= 194, covered


def _always_enter(obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return np.where(masks[:, Action.BUY] > 0, Action.BUY, Action.HOLD).astype(np.int64)


def test_walk_is_one_contiguous_pass_and_the_books_balance() -> None:
    bars = default_bars(n_days=2)[:3000]
    cfg = EnvConfig()
    result = walk(_always_enter, bars, cfg)
    assert result.decisions == len(bars) - WARMUP_BARS
    assert len(result.equity) == result.decisions + 1
    assert len(result.trade_pnl) > 20
    # Flat at the end: the marked equity equals the sum of the closed trades.
    assert result.equity[-1] == pytest.approx(result.trade_pnl.sum())
    assert (np.diff(result.trade_exit_bar) >= 0).all()
    flat = walk(always_flat_policy, bars, cfg)
    assert not flat.trade_pnl.size and not flat.equity.any()


def test_backtest_report_states_data_span_period_costs_and_intervals() -> None:
    bars = _bars(_business_days(400))
    section, walks = backtest(
        {"flat": always_flat_policy, "enter": _always_enter}, bars, EnvConfig(episode_bars=50)
    )
    assert section["periods_per_year"] == 252 and section["bar_period_s"] == 86_400
    assert section["data"] == "test"
    assert section["span"]["decision_bars"] == 400 - WARMUP_BARS
    assert section["span"]["first_decision"].startswith(str(bars.time[WARMUP_BARS - 1])[:10])
    assert section["costs"]["commission_per_side_usd"] == 2.5
    enter = section["policies"]["enter"]
    assert enter["trades"] == len(walks["enter"].trade_pnl) > 10
    for key in ("sharpe_annualised", "net_pnl_usd", "mean_r_per_trade", "win_rate_pct"):
        low, high = enter["ci"][key]
        assert low <= high
    low, high = enter["ci"]["net_pnl_usd"]
    assert low <= enter["net_pnl_usd"] <= high
    assert section["policies"]["flat"]["trades"] == 0
    assert section["policies"]["flat"]["sharpe_annualised"] == 0.0


def test_model_policy_numpy_actor_picks_the_torch_mode() -> None:
    """The walk's numpy forward pass decides exactly as the torch masked distribution."""
    from pathlib import Path

    from train import bundle as bundle_io
    from train.evaluation import ModelPolicy
    from train.validation import load_policy

    demo = bundle_io.load_bundle(Path(__file__).resolve().parent.parent / "bridge/default_model")
    env = TradingEnv(default_bars(n_days=2))
    model, vecnorm = load_policy(demo.model_path, demo.vecnorm_path, env)
    obs = np.stack([env.reset(options={"start": s})[0] for s in range(100, 2300, 3)])
    obs[::3, 220:] = [1, 1.001, 0.8, 1.7, 4, 0, 1, 1]  # some in a long position
    masks = np.ones((len(obs), 6))
    masks[1::3, 3:] = 0
    fast = ModelPolicy(model, vecnorm)
    assert fast._actor is not None
    chosen = fast(obs, masks)
    fast._actor = None  # the torch path
    assert np.array_equal(chosen, fast(obs, masks))
    assert len(set(chosen.tolist())) > 1


def test_validate_on_daily_bars_annualises_by_trading_days(tmp_path) -> None:
    """End to end: `validate` on a daily-bar file reports 252 periods a year, one bar
    per session, and the span of the file's held-out part."""
    import json
    from pathlib import Path

    from click.testing import CliRunner

    from ai_trading_bridge import cli
    from env.bars import save_bars_csv

    daily = tmp_path / "daily.csv"
    save_bars_csv(_bars(_business_days(300)), daily)
    demo = Path(__file__).resolve().parent.parent / "bridge" / "default_model"
    args = ["validate", str(demo), "--data", str(daily), "--episodes", "5"]
    args += ["--episode-bars", "50", "--report-dir", str(tmp_path / "r")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 3), result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    backtest_section = report["backtest"]
    assert backtest_section["periods_per_year"] == 252
    assert backtest_section["bars_per_session"] == 1
    assert backtest_section["bar_period_s"] == 86_400
    assert "252 trading days x 1 bars per session" in result.output


def test_walkforward_bad_plan_is_one_line_error(tmp_path) -> None:
    from click.testing import CliRunner

    from ai_trading_bridge import cli

    args = ["walkforward", "--out", str(tmp_path), "--folds", "50", "--synthetic-days", "2"]
    result = CliRunner().invoke(cli, [*args, "--episode-bars", "390"])
    assert result.exit_code == 2  # a usage error: the data cannot hold the plan
    assert len(result.stderr.splitlines()) == 1 and "fewer folds" in result.stderr
    assert "Traceback" not in result.output
