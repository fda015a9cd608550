"""One contiguous walk through the held-out span: the backtest behind the trading results.

Validation's 1000 episodes start at random bars and overlap heavily; they measure what a
policy *does* (the guide's action table and criteria) but their PnL is not a backtest.
Here each policy trades the held-out bars once, from the first decision bar to the last,
flat at the end, on the same execution model as training (``env.execution``: fills at
the next open plus slippage, tick-rounded brackets, commission on both sides).

Statistics (net of all costs):

- The equity curve is marked to market at every bar close (realised PnL plus the open
  position at the close, its exit commission not yet paid).
- Sharpe and Sortino come from per-bar equity changes, annualised by
  ``periods_per_year = 252 trading days x bars per session`` (the usual CME count of
  trading days); ``empyrical`` (empyrical-reloaded) does the arithmetic. A daily-bar
  series has one bar per session, so it annualises by 252. Bars per session is the
  median bar count of the complete sessions in the data (a session ends where the bar
  times jump by more than one bar period, or at the calendar day when they never do).
- Confidence intervals (90% by default, percentile) come from a block bootstrap whose
  blocks are whole sessions, resampled with replacement, so dependence inside a session
  is kept (Kuensch 1989; Politis and Romano 1994 for the block idea); per-trade figures
  (mean R, win rate) from an iid bootstrap over trades.
- Baselines (always flat, random valid, momentum) trade the very same path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from env.bars import Bars
from env.config import WARMUP_BARS
from env.trading_env import EnvConfig, TradingEnv
from train.evaluation import PolicyFn

TRADING_DAYS_PER_YEAR = 252
WEEKS_PER_YEAR = 52
DEFAULT_CONFIDENCE = 0.90
DEFAULT_RESAMPLES = 1000


@dataclass
class WalkResult:
    """A policy's single pass through ``bars``.

    Attributes:
        equity: Net equity in dollars at each decision bar's close, marked to market,
            starting at 0 before the first decision (length = decisions + 1).
        trade_pnl, trade_r: Net PnL of each closed trade in dollars and R.
        trade_exit_bar: Index into ``bars`` of the bar each trade closed on.
        decisions: Bars on which the policy decided.
    """

    equity: np.ndarray
    trade_pnl: np.ndarray
    trade_r: np.ndarray
    trade_exit_bar: np.ndarray
    decisions: int
    actions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def walk_env(bars: Bars, env_config: EnvConfig) -> TradingEnv:
    """An env whose single episode spans every decision bar of ``bars``."""
    episode = len(bars) - WARMUP_BARS
    if episode < 1:
        raise ValueError(
            f"{len(bars)} bars is too short for a walk: need more than {WARMUP_BARS} "
            "(indicator warm-up)"
        )
    cfg = EnvConfig.from_dict({**env_config.to_dict(), "episode_bars": episode})
    return TradingEnv(bars, cfg)


def walk(policy: PolicyFn, bars: Bars, env_config: EnvConfig) -> WalkResult:
    """Trade ``bars`` once with ``policy`` (first decision at bar ``WARMUP_BARS - 1``)."""
    env = walk_env(bars, env_config)
    obs, _ = env.reset(options={"start": WARMUP_BARS - 1})
    point_value = env.config.instrument.point_value
    equity = [0.0]
    realised = 0.0
    pnl, r, exits, actions = [], [], [], []
    done = False
    while not done:
        action = int(policy(obs[None, :], env.action_masks()[None, :])[0])
        actions.append(action)
        obs, _, terminated, truncated, info = env.step(action)
        trade = info.get("trade")
        if trade is not None:
            realised += trade.pnl_dollars
            pnl.append(trade.pnl_dollars)
            r.append(trade.r_multiple)
            exits.append(trade.exit_bar)
        book = env.book
        open_pnl = (
            book.side * (env.current_price - book.entry_price) * point_value
            - book.instrument.commission_per_side
            if book.side
            else 0.0
        )
        equity.append(realised + open_pnl)
        done = terminated or truncated
    return WalkResult(
        equity=np.asarray(equity),
        trade_pnl=np.asarray(pnl, float),
        trade_r=np.asarray(r, float),
        trade_exit_bar=np.asarray(exits, np.int64),
        decisions=len(actions),
        actions=np.asarray(actions, np.int64),
    )


# -- calendar ---------------------------------------------------------------------------


def bar_seconds(times: np.ndarray) -> int:
    """The bar period in seconds (``env.periods.detect_bar_period``); for bars that are
    not time-based (tick, volume, range), the most common spacing of their times."""
    from env.periods import detect_bar_period

    seconds = detect_bar_period(times).seconds
    if seconds is not None:
        return int(seconds)
    steps = np.diff(times.astype("datetime64[s]").astype(np.int64))
    values, counts = np.unique(steps[steps > 0], return_counts=True)
    return int(values[counts.argmax()])


def session_ids(times: np.ndarray, period_s: int) -> np.ndarray:
    """Session number of each bar: a new session starts where the bar times jump by
    more than one bar period (a halt, a night, a weekend); daily or longer bars are one
    session each; series with no gap at all (24-hour markets) split at calendar days."""
    seconds = times.astype("datetime64[s]").astype(np.int64)
    if period_s >= 86_400:
        return np.arange(len(seconds))
    gaps = np.concatenate([[False], np.diff(seconds) > period_s])
    if gaps.any():
        return np.cumsum(gaps)
    # Times are bar closes: a bar closing at midnight belongs to the day before.
    days = (times.astype("datetime64[s]") - np.timedelta64(1, "s")).astype("datetime64[D]")
    days = days.astype(np.int64)
    return days - days[0]


def bars_per_session(times: np.ndarray, period_s: int) -> float:
    """Median bar count of the complete sessions (the first and last may be cut)."""
    ids = session_ids(times, period_s)
    counts = np.bincount(ids - ids.min())
    inner = counts[1:-1] if len(counts) > 2 else counts
    return float(np.median(inner))


def periods_per_year(times: np.ndarray) -> tuple[float, int, float]:
    """``(periods_per_year, bar_seconds, bars_per_session)`` for annualising per-bar
    statistics: 252 trading days x bars per session."""
    period = bar_seconds(times)
    if period >= 5 * 86_400:  # weekly bars
        return WEEKS_PER_YEAR, period, 1.0
    per_session = bars_per_session(times, period)
    return TRADING_DAYS_PER_YEAR * per_session, period, per_session


# -- statistics -------------------------------------------------------------------------


def sharpe(pnl: np.ndarray, annualization: float) -> float:
    """Annualised Sharpe ratio of per-period PnL (risk-free 0; scale-free, so dollars
    serve as returns). 0 when the PnL never varies."""
    import empyrical  # type: ignore[import-untyped]

    if len(pnl) < 2 or not np.std(pnl) > 0:
        return 0.0
    return float(empyrical.sharpe_ratio(pnl, annualization=annualization))


def sortino(pnl: np.ndarray, annualization: float) -> float:
    import empyrical  # type: ignore[import-untyped]

    if len(pnl) < 2 or not (pnl < 0).any():
        return 0.0
    value = float(empyrical.sortino_ratio(pnl, annualization=annualization))
    return value if np.isfinite(value) else 0.0


def max_drawdown(equity: np.ndarray) -> float:
    """Largest fall of the equity curve from a previous peak, in dollars (>= 0)."""
    if len(equity) == 0:
        return 0.0
    return float((np.maximum.accumulate(equity) - equity).max())


def _interval(samples: np.ndarray, confidence: float) -> list[float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return [round(float(low), 4), round(float(high), 4)]


def session_bootstrap(
    pnl: np.ndarray, groups: np.ndarray, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resample whole sessions (``groups``: session number of each PnL entry) with
    replacement, as many as there are: per resample, the total PnL and the per-period
    Sharpe of the resampled bars. Memory is ``resamples x sessions``, not bars."""
    _, inverse = np.unique(groups, return_inverse=True)
    s1 = np.bincount(inverse, weights=pnl)
    s2 = np.bincount(inverse, weights=pnl * pnl)
    count = np.bincount(inverse).astype(float)
    k = len(count)
    pick = np.random.default_rng(seed).integers(0, k, size=(resamples, k))
    total, total_sq, n = s1[pick].sum(axis=1), s2[pick].sum(axis=1), count[pick].sum(axis=1)
    mean = total / n
    var = np.maximum(total_sq - n * mean * mean, 0.0) / np.maximum(n - 1, 1)
    std = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), mean / std, 0.0)
    return total, ratio


def sharpe_interval(
    pnl: np.ndarray,
    annualization: float,
    groups: np.ndarray | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> list[float]:
    """Percentile interval of the annualised Sharpe under a bootstrap of whole sessions
    (``groups``; each entry its own group when None)."""
    if len(pnl) < 2:
        return [0.0, 0.0]
    groups = np.arange(len(pnl)) if groups is None else groups
    _, ratio = session_bootstrap(pnl, groups, resamples, seed)
    return _interval(ratio * np.sqrt(annualization), confidence)


def summarize(
    result: WalkResult,
    annualization: float,
    groups: np.ndarray,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Trades, win rate, net $ and R, Sharpe, Sortino, max drawdown, with bootstrap
    intervals (``ci`` keys hold ``[low, high]`` at ``confidence``). ``groups`` is the
    session number of each bar-to-bar PnL (``len(result.equity) - 1`` entries)."""
    pnl = np.diff(result.equity)
    trades = len(result.trade_pnl)
    stats: dict[str, Any] = {
        "decisions": result.decisions,
        "trades": trades,
        "win_rate_pct": round(100.0 * float((result.trade_pnl > 0).mean()), 2) if trades else 0.0,
        "net_pnl_usd": round(float(result.equity[-1]), 2),
        "net_pnl_r": round(float(result.trade_r.sum()), 3),
        "mean_r_per_trade": round(float(result.trade_r.mean()), 4) if trades else 0.0,
        "sharpe_annualised": round(sharpe(pnl, annualization), 3),
        "sortino_annualised": round(sortino(pnl, annualization), 3),
        "max_drawdown_usd": round(max_drawdown(result.equity), 2),
    }
    ci: dict[str, list[float]] = {}
    if len(pnl) >= 2:
        total, ratio = session_bootstrap(pnl, groups, resamples, seed)
        ci["sharpe_annualised"] = _interval(ratio * np.sqrt(annualization), confidence)
        ci["net_pnl_usd"] = _interval(total, confidence)
    if trades >= 2:
        rng = np.random.default_rng(seed + 2)
        pick = rng.integers(0, trades, size=(resamples, trades))
        ci["mean_r_per_trade"] = _interval(result.trade_r[pick].mean(axis=1), confidence)
        wins = 100.0 * (result.trade_pnl[pick] > 0).mean(axis=1)
        ci["win_rate_pct"] = _interval(wins, confidence)
    stats["ci"] = ci
    return stats


def backtest(
    policies: dict[str, PolicyFn],
    bars: Bars,
    env_config: EnvConfig,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, WalkResult]]:
    """Walk every policy through ``bars`` (warm-up included) and summarise.

    Returns:
        The report section (data, span, bar period, costs, per-policy statistics) and the
        raw walks (for plots).
    """
    annualization, period_s, per_session = periods_per_year(bars.time)
    walks = {name: walk(policy, bars, env_config) for name, policy in policies.items()}
    first = WARMUP_BARS - 1
    # PnL entry i is earned from decision bar first + i to the next bar: its session.
    groups = session_ids(bars.time, period_s)[first + 1 :]
    instrument = env_config.instrument
    execution = env_config.execution
    section = {
        "method": (
            "one contiguous walk through the held-out bars per policy, marked to market "
            "at each bar close, net of commission and slippage"
        ),
        "data": bars.source,
        "span": {
            "first_decision": str(bars.time[first]),
            "last_bar": str(bars.time[-1]),
            "decision_bars": len(bars) - WARMUP_BARS,
            "sessions": len(np.unique(groups)),
        },
        "bar_period_s": period_s,
        "bars_per_session": per_session,
        "periods_per_year": annualization,
        "annualisation": f"{TRADING_DAYS_PER_YEAR} trading days x {per_session:g} bars per session",
        "costs": {
            "instrument": instrument.symbol,
            "commission_per_side_usd": instrument.commission_per_side,
            "slippage_ticks": execution.slippage_ticks,
            "tick_size": instrument.tick_size,
            "point_value": instrument.point_value,
        },
        "bootstrap": {
            "confidence": confidence,
            "resamples": resamples,
            "method": "whole sessions resampled with replacement; iid over trades",
        },
        "policies": {
            name: summarize(result, annualization, groups, confidence, resamples, seed)
            for name, result in walks.items()
        },
    }
    return section, walks
