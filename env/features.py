"""Market and position features: one implementation for training and serving.

Per bar ``t`` (11 values, all scale-free so a model survives price-level changes):

===  ====================  ==================================================
idx  name                  definition
===  ====================  ==================================================
0    log_return            log(close / close[t-1]); 0 on the first bar
1    range_atr             (high - low) / ATR
2    body_atr              (close - open) / ATR
3    upper_wick_atr        (high - max(open, close)) / ATR
4    lower_wick_atr        (min(open, close) - low) / ATR
5    close_ema20_atr       (close - EMA20) / ATR
6    ema20_slope5_atr      (EMA20 - EMA20[t-5]) / ATR
7    rsi14                 (RSI14 - 50) / 50, in [-1, 1]
8    log_volume_ratio      log((volume + 1) / (SMA20(volume) + 1))
9    time_sin              sin(2 pi minute_of_day / 1440); 0 on bars of a day or longer
10   time_cos              cos(2 pi minute_of_day / 1440); 0 on bars of a day or longer
===  ====================  ==================================================

ATR is Wilder's ATR(14) (a plain mean of the true ranges until 14 bars are known), floored
at one tick of the traded contract (and at ``1e-6 x close`` when no tick is given): a
price cannot move less than a tick, and a run of one-price bars (a limit lock) would
otherwise shrink ATR towards zero and every ``/ ATR`` feature, bracket and R-multiple
with it. RSI14 uses Wilder smoothing the same way. EMA20 starts at the first close.

The volume feature is defined for any volume >= 0: a series without volume (many FX
vendors ship 0) gives log(1 / 1) = 0 on every bar.

Time of day only means something on intraday bars. On daily (or longer) bars the close
time is the same every bar, so the two time features would be a constant in training
that VecNormalize divides by a variance of ~0 (and any other value live would explode);
they are 0 there, in both paths.

Version history (``FEATURE_VERSION``):

- ``scalefree-v1``: ATR floor ``1e-6 x close``; time features on every bar period.
- ``scalefree-v2``: ATR floor one tick; time features 0 on bars of a day or longer.
  Identical to v1 on intraday bars whose ATR stays at or above one tick (every bar of
  the bundled NQ 1-minute demo data), so v1 models stay servable.

Both paths run the same code, bar by bar: :class:`IndicatorState` updates the recursive
indicators and :func:`bar_features` turns one bar and its indicators into the 11 values,
in float64 with the ``math`` module, cast to float32 once. The batch path
(:func:`compute_market_features`, used by the environment over a whole series) collects
those rows; the streaming path (:class:`StreamingFeatures`, used by the daemon) keeps the
last 20. Identical code means identical float32 values, which ``tests/test_features.py``
checks over generated bar series; it also keeps the daemon's per-bar cost to a few
microseconds (no numpy call on one-element arrays).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from env.config import (
    MARKET_FEATURE_COUNT,
    POSITION_FEATURE_COUNT,
    TOTAL_MARKET_FEATURES,
    TOTAL_OBSERVATION_SIZE,
    WINDOW_SIZE,
)

ATR_PERIOD = 14
RSI_PERIOD = 14
EMA_PERIOD = 20
EMA_SLOPE_LAG = 5
VOLUME_SMA_PERIOD = 20
ATR_FLOOR_FRACTION = 1e-6
MINUTES_PER_DAY = 1440
NO_TIME_OF_DAY = -1  # minute_of_day of a bar whose period is a day or longer

# Time-of-day encodings as lookup tables, so both paths read the very same float.
_ANGLE = 2.0 * np.pi * np.arange(MINUTES_PER_DAY, dtype=np.float64) / MINUTES_PER_DAY
# Index -1 (NO_TIME_OF_DAY) reads the trailing 0.0: no time of day on daily bars.
TIME_SIN: list[float] = [*np.sin(_ANGLE).tolist(), 0.0]
TIME_COS: list[float] = [*np.cos(_ANGLE).tolist(), 0.0]


class IndicatorState:
    """Streaming state of the recursive indicators behind the features (float64)."""

    __slots__ = (
        "atr",
        "avg_gain",
        "avg_loss",
        "ema",
        "ema_history",
        "n_bars",
        "prev_close",
        "tick_size",
        "volumes",
    )

    def __init__(self, tick_size: float = 0.0) -> None:
        """Args: tick_size: the contract's tick, the ATR floor (0: ``1e-6 x close`` only)."""
        self.tick_size = tick_size
        self.n_bars = 0
        self.prev_close = 0.0
        self.atr = 0.0
        self.ema = 0.0
        self.ema_history: deque[float] = deque(maxlen=EMA_SLOPE_LAG + 1)
        self.avg_gain = 0.0
        self.avg_loss = 0.0
        self.volumes: deque[float] = deque(maxlen=VOLUME_SMA_PERIOD)

    def update(
        self, high: float, low: float, close: float, volume: float
    ) -> tuple[float, float, float, float, float, float]:
        """Add one bar; return (prev_close, atr, ema, ema_lag, rsi, volume_sma)."""
        first = self.n_bars == 0
        prev_close = close if first else self.prev_close
        if first:
            true_range = high - low
        else:
            true_range = max(high - low, abs(high - prev_close), abs(low - prev_close))
        change = close - prev_close
        gain = change if change > 0.0 else 0.0
        loss = -change if change < 0.0 else 0.0

        self.n_bars += 1
        k = self.n_bars
        # Wilder smoothing: a plain running mean until ``period`` values are known.
        atr_n = k if k <= ATR_PERIOD else ATR_PERIOD
        rsi_n = k if k <= RSI_PERIOD else RSI_PERIOD
        self.atr = self.atr + (true_range - self.atr) / atr_n
        self.avg_gain = self.avg_gain + (gain - self.avg_gain) / rsi_n
        self.avg_loss = self.avg_loss + (loss - self.avg_loss) / rsi_n
        self.ema = close if first else self.ema + (2.0 / (EMA_PERIOD + 1)) * (close - self.ema)
        self.ema_history.append(self.ema)
        self.volumes.append(volume)
        self.prev_close = close

        atr = max(self.atr, self.tick_size, close * ATR_FLOOR_FRACTION)
        if self.avg_loss > 0.0:
            rsi = 100.0 - 100.0 / (1.0 + self.avg_gain / self.avg_loss)
        else:
            rsi = 100.0 if self.avg_gain > 0.0 else 50.0
        volume_sma = sum(self.volumes) / len(self.volumes)
        return prev_close, atr, self.ema, self.ema_history[0], rsi, volume_sma


def bar_features(
    open_: float,
    high: float,
    low: float,
    close: float,
    volume: float,
    indicators: tuple[float, float, float, float, float, float],
    minute_of_day: int,
) -> tuple[float, ...]:
    """The 11 features of one bar (float64) from its indicators.

    Args:
        open_, high, low, close, volume: The bar.
        indicators: :meth:`IndicatorState.update`'s output for this bar.
        minute_of_day: 0..1439, of the bar's close time; ``NO_TIME_OF_DAY`` on bars of
            a day or longer (both time features 0).
    """
    prev_close, atr, ema, ema_lag, rsi, volume_sma = indicators
    body_top = open_ if open_ > close else close
    body_bottom = close if open_ > close else open_
    return (
        math.log(close / prev_close),
        (high - low) / atr,
        (close - open_) / atr,
        (high - body_top) / atr,
        (body_bottom - low) / atr,
        (close - ema) / atr,
        (ema - ema_lag) / atr,
        (rsi - 50.0) / 50.0,
        math.log((volume + 1.0) / (volume_sma + 1.0)),
        TIME_SIN[minute_of_day],
        TIME_COS[minute_of_day],
    )


def compute_market_features(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    minute_of_day: np.ndarray,
    tick_size: float = 0.0,
    intraday: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Batch path: features of every bar of a series.

    Args:
        open_, high, low, close, volume: float64 arrays of the bars.
        minute_of_day: Exchange-local minute of each bar's close.
        tick_size: The contract's tick (the ATR floor).
        intraday: False for bars of a day or longer: time features 0.

    Returns:
        ``(features, atr)``: float32 (n, 11) and the float64 ATR (floored) of each bar.
    """
    state = IndicatorState(tick_size)
    if not intraday:
        minute_of_day = np.full(len(close), NO_TIME_OF_DAY, dtype=np.int64)
    rows = []
    atr = []
    for o, h, lo, c, v, m in zip(
        open_.tolist(),
        high.tolist(),
        low.tolist(),
        close.tolist(),
        volume.tolist(),
        minute_of_day.tolist(),
    ):
        indicators = state.update(h, lo, c, v)
        rows.append(bar_features(o, h, lo, c, v, indicators, m))
        atr.append(indicators[1])
    features = np.array(rows, dtype=np.float64).reshape(len(rows), MARKET_FEATURE_COUNT)
    return features.astype(np.float32), np.array(atr, dtype=np.float64)


class StreamingFeatures:
    """Streaming path: features bar by bar, and the 220-value window of the last 20 bars."""

    def __init__(self, tick_size: float = 0.0, intraday: bool = True) -> None:
        """Args: tick_size: the traded contract's tick (the ATR floor; serve with the
        same tick the model was trained on). intraday: False for bars of a day or
        longer (time features 0), from the model's bar period."""
        self.indicators = IndicatorState(tick_size)
        self.intraday = intraday
        self._rows = np.zeros((WINDOW_SIZE, MARKET_FEATURE_COUNT), dtype=np.float32)
        # Views made once: the window shifts by one row per bar (numpy copies overlapping
        # views as if through a buffer), and the new bar's row.
        self._older, self._newer = self._rows[:-1], self._rows[1:]
        self._last = self._rows[-1]
        self._flat = self._rows.reshape(TOTAL_MARKET_FEATURES)
        self.n_bars = 0
        self.close = math.nan
        self.atr = math.nan

    def update(
        self,
        minute_of_day: int,
        open_: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> np.ndarray:
        """Add one closed bar; return its 11 features (float32)."""
        self.push(minute_of_day, open_, high, low, close, volume)
        return self._rows[-1].copy()

    def push(
        self,
        minute_of_day: int,
        open_: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> None:
        """:meth:`update` without returning the bar's features (the daemon's per-bar call)."""
        indicators = self.indicators.update(high, low, close, volume)
        minute = minute_of_day if self.intraday else NO_TIME_OF_DAY
        self._older[...] = self._newer
        self._last[...] = bar_features(open_, high, low, close, volume, indicators, minute)
        self.n_bars += 1
        self.close = close
        self.atr = indicators[1]

    def window(self) -> np.ndarray:
        """The last 20 bars' features, oldest first, flattened bar-major (220 float32)."""
        return self._rows.reshape(TOTAL_MARKET_FEATURES).copy()

    def observation(self, position: tuple[float, ...]) -> np.ndarray:
        """``build_observation(self.window(), position)`` (228 float32), without the
        window's intermediate copy."""
        return build_observation(self._flat, position)


def position_features(
    side: int,
    entry_price: float,
    stop_price: float,
    target_price: float,
    bars_in_position: int,
    close: float,
    atr: float,
) -> tuple[float, float, float, float, float, float, float, float]:
    """The guide's eight position features (``_get_position_features``), in its order.

    ``close`` and ``atr`` are those of the bar just closed. Flat gives
    ``(0, 1, 0, 0, 0, 1, 0, 0)``: the guide's code, not its printed example (SPEC.md).
    """
    if side == 0:
        return (0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    return (
        float(side),
        entry_price / close,
        abs(close - stop_price) / atr,
        abs(target_price - close) / atr,
        float(bars_in_position),
        0.0,
        1.0,
        1.0,
    )


def build_observation(window: np.ndarray, position: tuple[float, ...]) -> np.ndarray:
    """Concatenate a 220-value market window and the 8 position features (float32)."""
    obs = np.empty(TOTAL_OBSERVATION_SIZE, dtype=np.float32)
    obs[:TOTAL_MARKET_FEATURES] = window
    obs[TOTAL_MARKET_FEATURES:] = position
    return obs


assert TOTAL_OBSERVATION_SIZE == TOTAL_MARKET_FEATURES + POSITION_FEATURE_COUNT
