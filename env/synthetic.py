"""Deterministic synthetic NQ-like 1-minute bars: the embedded default data.

The generator reproduces the stylised facts a trading policy meets on Nasdaq-100 futures,
so every command runs with no data file:

- CME Globex hours from the contract's session calendar (pandas-market-calendars, the
  one ``env.sessions`` serves everything else from): Sunday 17:00 to Friday 16:00
  Chicago time with a daily halt 16:00-17:00, holidays and early closes (e.g. 12:00 on
  Martin Luther King Day), so bars close at 17:01 .. 16:00 and the series has session
  gaps; the reopen after a halt, weekend or holiday gaps in price.
- Volatility clustering: a GARCH(1,1) variance process.
- Intraday seasonality: volatility and volume follow a U shape around the cash session
  (08:30-15:00), with quiet overnight hours.
- Realistic volume: log-normal, scaled by the seasonal profile and current volatility.
- Persistent drift regimes (a three-state Markov chain: down, none, up) whose drift is a
  small fraction of the volatility, so a policy has something faint but real to learn.

Prices are tick-rounded (0.25) and every bar satisfies low <= open, close <= high.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np

from env.bars import Bars
from env.contracts import resolve_contract
from env.sessions import SessionCalendar

TICK = 0.25
START_PRICE = 21000.0
BASE_SIGMA = 0.00035  # per-minute log-return volatility away from the open/close
GARCH_OMEGA, GARCH_ALPHA, GARCH_BETA = 0.02, 0.08, 0.90  # unit long-run variance
REGIME_STAY = 0.985  # chance a drift regime lasts another bar (mean ~67 bars)
REGIME_DRIFT = 0.12  # drift in units of the current volatility in up/down regimes
DEFAULT_DAYS = 60
DEFAULT_SEED = 7


def session_minutes(first_day: datetime, n_days: int, contract: str = "NQ") -> np.ndarray:
    """Close times (exchange-local, datetime64[s]) of every 1-minute bar in the first
    ``n_days`` sessions of ``contract``'s calendar whose trading day is ``first_day`` or
    later: from one minute after each session's open to its close."""
    import pandas as pd  # type: ignore[import-untyped]

    spec = resolve_contract(contract)
    end = first_day + timedelta(days=2 * n_days + 14)
    calendar = SessionCalendar.for_contract(spec, first_day - timedelta(days=7), end)
    first_open = np.datetime64(first_day - timedelta(days=1), "s").astype(np.int64)
    chosen = np.flatnonzero(calendar.opens >= first_open)[:n_days]
    if len(chosen) < n_days:
        raise ValueError(f"the {spec.calendar} calendar has fewer than {n_days} sessions")
    minute = 60
    utc = np.concatenate(
        [
            np.arange(calendar.opens[i] + minute, calendar.closes[i] + 1, minute)
            for i in chosen.tolist()
        ]
    )
    local = pd.DatetimeIndex(utc.astype("datetime64[s]")).tz_localize("UTC")
    return local.tz_convert(spec.timezone).tz_localize(None).to_numpy(dtype="datetime64[s]")


def _seasonal_profile(minute_of_day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Volatility and volume multipliers by minute of the day (Chicago time)."""
    hours = minute_of_day / 60.0
    cash = (hours >= 8.5) & (hours < 15.0)
    since_open = np.clip(hours - 8.5, 0.0, None)
    to_close = np.clip(15.0 - hours, 0.0, None)
    u_shape = 1.0 + 1.6 * np.exp(-since_open / 0.5) + 0.8 * np.exp(-to_close / 0.4)
    vol = np.where(cash, u_shape, 0.45)
    vol = vol + np.where((hours >= 2.0) & (hours < 8.5), 0.2, 0.0)  # European hours
    volume = np.where(cash, 2.2 * u_shape, 0.35)
    return vol, volume


def generate_bars(
    n_days: int = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    start: datetime = datetime(2025, 1, 6),
) -> Bars:
    """Generate ``n_days`` sessions of NQ-like 1-minute bars, identical for the same seed."""
    rng = np.random.default_rng(seed)
    times = session_minutes(start, n_days)
    n = len(times)
    minute = ((times - times.astype("datetime64[D]")).astype(np.int64) // 60).astype(np.int64)
    vol_season, volume_season = _seasonal_profile(minute)
    session_start = np.zeros(n, dtype=bool)
    session_start[0] = True
    session_start[1:] = np.diff(times) > np.timedelta64(60, "s")

    shocks = rng.standard_normal(n)
    regime_draws = rng.random(n)
    regime_choice = rng.integers(0, 3, n)
    variance = np.empty(n)
    drift = np.empty(n)
    h, regime = 1.0, 0
    for i in range(n):
        variance[i] = h
        if regime_draws[i] > REGIME_STAY:
            regime = int(regime_choice[i]) - 1
        drift[i] = regime
        h = GARCH_OMEGA + GARCH_ALPHA * h * shocks[i] ** 2 + GARCH_BETA * h
        h = min(h, 25.0)
    sigma = BASE_SIGMA * np.sqrt(variance) * vol_season
    returns = sigma * (shocks + REGIME_DRIFT * drift)
    gaps = np.where(session_start, rng.standard_normal(n) * BASE_SIGMA * 12.0, 0.0)
    gaps[0] = 0.0

    close = START_PRICE * np.exp(np.cumsum(returns + gaps))
    open_ = np.empty(n)
    open_[0] = START_PRICE
    open_[1:] = close[:-1] * np.exp(gaps[1:])
    open_ = np.round(open_ / TICK) * TICK
    close = np.round(close / TICK) * TICK
    wick = np.abs(rng.standard_normal((2, n))) * sigma * close * 0.6
    high = np.ceil((np.maximum(open_, close) + wick[0]) / TICK) * TICK
    low = np.floor((np.minimum(open_, close) - wick[1]) / TICK) * TICK
    volume = np.floor(
        rng.lognormal(mean=5.0, sigma=0.5, size=n) * volume_season * np.sqrt(variance)
    )
    return Bars(
        time=times,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        source=f"synthetic:NQ-1min:days={n_days}:seed={seed}",
    )


@lru_cache(maxsize=4)
def default_bars(n_days: int = DEFAULT_DAYS, seed: int = DEFAULT_SEED) -> Bars:
    """The embedded default data set (cached per process)."""
    return generate_bars(n_days=n_days, seed=seed)
