"""Feature parity (batch vs streaming) and the feature definitions."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from env.config import MARKET_FEATURE_COUNT, TOTAL_MARKET_FEATURES, WINDOW_SIZE
from env.features import (
    StreamingFeatures,
    build_observation,
    compute_market_features,
    position_features,
)
from env.synthetic import generate_bars


@st.composite
def bar_series(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """Random valid OHLCV series, including flat bars, zero volume and big gaps."""
    n = draw(st.integers(min_value=1, max_value=120))
    price = draw(st.floats(min_value=0.5, max_value=50_000.0))
    rows = []
    minutes = []
    minute = draw(st.integers(min_value=0, max_value=1439))
    for _ in range(n):
        move = draw(st.floats(min_value=-0.05, max_value=0.05))
        open_ = price
        close = max(price * (1.0 + move), 1e-3)
        top = max(open_, close) * (1.0 + draw(st.floats(min_value=0.0, max_value=0.02)))
        bottom = min(open_, close) * (1.0 - draw(st.floats(min_value=0.0, max_value=0.02)))
        volume = draw(st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1e6)))
        rows.append((open_, top, bottom, close, volume))
        minutes.append(minute)
        minute = (minute + draw(st.integers(min_value=1, max_value=600))) % 1440
        price = close
    array = np.array(rows, dtype=np.float64)
    return (*array.T, np.array(minutes, dtype=np.int64))


def _stream(open_, high, low, close, volume, minutes) -> tuple[np.ndarray, list[np.ndarray]]:
    streaming = StreamingFeatures()
    rows, windows = [], []
    for i in range(len(close)):
        rows.append(
            streaming.update(int(minutes[i]), open_[i], high[i], low[i], close[i], volume[i])
        )
        windows.append(streaming.window())
    return np.array(rows), windows


@settings(max_examples=150, deadline=None)
@given(bar_series())
def test_features_batch_and_streaming_identical_bit_for_bit(series) -> None:
    batch, atr = compute_market_features(*series)
    streamed, windows = _stream(*series)
    assert batch.dtype == np.float32 and streamed.dtype == np.float32
    assert np.array_equal(batch.view(np.uint32), streamed.view(np.uint32))
    # The streaming window of the last 20 bars is the batch rows, oldest first.
    last = len(batch) - 1
    if last + 1 >= WINDOW_SIZE:
        expected = batch[last + 1 - WINDOW_SIZE : last + 1].reshape(TOTAL_MARKET_FEATURES)
        assert np.array_equal(windows[-1].view(np.uint32), expected.view(np.uint32))
    assert np.all(np.isfinite(batch))
    assert np.all(atr > 0)


def test_features_on_synthetic_series_identical_and_finite() -> None:
    bars = generate_bars(n_days=2, seed=3)
    args = (bars.open, bars.high, bars.low, bars.close, bars.volume, bars.minute_of_day)
    batch, _ = compute_market_features(*args)
    streamed, _ = _stream(*args)
    assert batch.shape == (len(bars), MARKET_FEATURE_COUNT)
    assert np.array_equal(batch, streamed)
    assert np.all(np.abs(batch[:, 7]) <= 1.0)  # RSI mapped to [-1, 1]
    assert np.allclose(batch[:, 9] ** 2 + batch[:, 10] ** 2, 1.0, atol=1e-6)


def test_features_hand_computed_second_bar() -> None:
    open_ = np.array([100.0, 101.0])
    high = np.array([102.0, 104.0])
    low = np.array([99.0, 100.5])
    close = np.array([101.0, 103.0])
    volume = np.array([10.0, 30.0])
    minutes = np.array([0, 360])
    features, atr = compute_market_features(open_, high, low, close, volume, minutes)
    # ATR: mean of true ranges 3.0 and max(3.5, 3.0, 0.5) = 3.5 -> 3.25
    assert atr[1] == 3.25
    f = features[1].astype(np.float64)
    assert math.isclose(f[0], math.log(103 / 101), rel_tol=1e-6)
    assert math.isclose(f[1], 3.5 / 3.25, rel_tol=1e-6)
    assert math.isclose(f[2], 2.0 / 3.25, rel_tol=1e-6)
    assert math.isclose(f[3], 1.0 / 3.25, rel_tol=1e-6)
    assert math.isclose(f[4], 0.5 / 3.25, rel_tol=1e-6)
    ema = 101 + (2 / 21) * (103 - 101)
    assert math.isclose(f[5], (103 - ema) / 3.25, rel_tol=1e-6)
    assert math.isclose(f[6], (ema - 101) / 3.25, rel_tol=1e-6)  # lag clamps to bar 0
    assert f[7] == 1.0  # only gains so far: RSI 100
    assert math.isclose(f[8], math.log(31 / 21), rel_tol=1e-6)
    assert math.isclose(f[9], 1.0, abs_tol=1e-7) and math.isclose(f[10], 0.0, abs_tol=1e-7)


def test_first_bar_log_return_zero_and_atr_floor_on_flat_bars() -> None:
    n = 30
    price = np.full(n, 5000.0)
    features, atr = compute_market_features(
        price, price, price, price, np.zeros(n), np.zeros(n, dtype=np.int64)
    )
    assert features[0, 0] == 0.0
    assert np.all(atr == 5000.0 * 1e-6)
    assert np.all(np.isfinite(features))


def test_position_features_flat_follow_guide_code() -> None:
    assert position_features(0, 0.0, 0.0, 0.0, 0, 21000.0, 8.0) == (0, 1, 0, 0, 0, 1, 0, 0)


def test_position_features_long_values() -> None:
    values = position_features(1, 20990.0, 20980.0, 21020.0, 7, 21000.0, 10.0)
    assert values == (1.0, 20990.0 / 21000.0, 2.0, 2.0, 7.0, 0.0, 1.0, 1.0)


def test_build_observation_layout() -> None:
    window = np.arange(TOTAL_MARKET_FEATURES, dtype=np.float32)
    obs = build_observation(window, (-1.0, 1.0, 2.0, 3.0, 4.0, 0.0, 1.0, 1.0))
    assert obs.shape == (228,) and obs.dtype == np.float32
    assert np.array_equal(obs[:220], window)
    assert obs[220] == -1.0 and obs[-1] == 1.0
