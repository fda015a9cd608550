"""The real-world inputs the product got wrong, each with its right value.

Inputs copied into tests/data/: a Euro FX hourly series without volume, an NQ limit lock
followed by a price gap, and a NinjaTrader 8 export (written in UTC).
"""

from __future__ import annotations

import math
import warnings
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from bridge.protocol import parse_bar
from env import EnvConfig, TradingEnv
from env.bars import BarsTimezoneWarning, load_bars
from env.config import MARKET_FEATURE_COUNT, TOTAL_MARKET_FEATURES, WINDOW_SIZE, Action
from env.contracts import resolve_contract
from env.execution import ExecutionConfig, on_tick_grid
from env.features import StreamingFeatures
from env.periods import BarPeriod
from env.reward import MAX_STEP_REWARD

DATA = Path(__file__).parent / "data"
EURO_FX = DATA / "6E_hourly_zero_volume.Last.txt"
LIMIT_LOCK = DATA / "NQ_limit_lock.Last.txt"
EXPORT_UTC = DATA / "NQ_export_utc.Last.txt"
CHICAGO = ZoneInfo("America/Chicago")

# The synthetic case files have bars inside the daily halt; the loader rightly warns.
pytestmark = pytest.mark.filterwarnings("ignore::env.bars.BarsTimezoneWarning")


def _run_random_episodes(env: TradingEnv, episodes: int, seed: int) -> list[tuple]:
    """Random valid actions; every order price and reward seen, per step."""
    rng = np.random.default_rng(seed)
    seen = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        done = False
        while not done:
            mask = env.action_masks()
            action = int(rng.choice(np.flatnonzero(mask)))
            close = env.current_price
            _, reward, terminated, truncated, _ = env.step(action)
            book = env.book
            seen.append((action, close, book.side, book.stop_price, book.target_price, reward))
            done = terminated or truncated
    return seen


def test_euro_fx_hourly_zero_volume_trains_as_6e_on_its_grid() -> None:
    spec = resolve_contract("6E")
    bars = load_bars(EURO_FX, contract=spec)
    assert bars.bar_period == BarPeriod("minute", 60)
    assert np.all(bars.volume == 0)
    env = TradingEnv(bars, EnvConfig(instrument=spec, episode_bars=0))
    assert env.config.instrument.tick_size == 0.00005
    assert env.config.instrument.point_value == 125_000.0
    assert env.config.episode_bars == 60  # hourly bars: 60 decisions, not 390
    volume_feature = env.market_features[:, 8]
    assert np.all(np.isfinite(env.market_features))
    assert np.all(volume_feature == 0.0)  # log((0 + 1) / (0 + 1))

    for _, _, side, stop, target, reward in _run_random_episodes(env, 20, seed=1):
        assert abs(reward) <= MAX_STEP_REWARD
        if side != 0:
            assert on_tick_grid(stop, 0.00005) and on_tick_grid(target, 0.00005)
            assert repr(stop) == repr(round(stop, 5)) and repr(target) == repr(round(target, 5))
    # bracket prices decided at a close: on the grid and on the right side of it
    for side in (1, -1):
        env.reset(seed=3)
        close = env.current_price
        env.position = side
        stop, target = env.book.stop_price, env.book.target_price
        assert (stop < close < target) if side > 0 else (target < close < stop)
        assert on_tick_grid(stop, 0.00005) and on_tick_grid(target, 0.00005)


def test_limit_lock_atr_floor_reward_bound_and_gap_fill() -> None:
    with pytest.warns(BarsTimezoneWarning, match="are the file's times really UTC"):
        load_bars(LIMIT_LOCK)  # read as UTC it starts on a Sunday at 12:01 in Chicago
    with warnings.catch_warnings():
        warnings.simplefilter("error", BarsTimezoneWarning)
        bars = load_bars(LIMIT_LOCK, data_timezone="America/Chicago")
    config = EnvConfig(execution=ExecutionConfig(slippage_ticks=0))
    env = TradingEnv(bars, config)
    atr = np.array(env._atr)
    assert atr.min() >= 0.25  # ATR never below one NQ tick
    lock = slice(60, 210)  # 150 one-price bars at 19897.25
    assert np.all(bars.high[lock] == bars.low[lock])
    gap_bar = 210
    assert bars.open[gap_bar] == 19777.25

    env.reset(options={"start": 150})
    env.step(Action.BUY)  # fills at the next open, inside the lock
    assert env.book.side == 1 and env.book.entry_price == 19897.25
    rewards = []
    while env.t < gap_bar:
        _, reward, _, _, info = env.step(Action.HOLD)
        rewards.append(reward)
    trade = info["trade"]
    assert trade.exit_reason == "stop" and trade.exit_bar == gap_bar
    assert trade.exit_price == 19777.25  # through the gap: filled at the gap's open
    assert trade.r_multiple < -MAX_STEP_REWARD  # the unclipped R stays in the trade
    assert rewards[-1] == -MAX_STEP_REWARD
    for *_, reward in _run_random_episodes(env, 10, seed=2):
        assert abs(reward) <= MAX_STEP_REWARD


def test_ninjatrader_export_loads_as_utc_and_converts_to_chicago() -> None:
    bars = load_bars(EXPORT_UTC)
    assert bars.data_timezone == "UTC" and bars.timezone == "America/Chicago"
    i = int(np.flatnonzero(bars.time == np.datetime64("2025-01-06T08:31:00"))[0])
    first_line = EXPORT_UTC.read_text().splitlines()[i]
    assert first_line.startswith("20250106 143100;")  # 14:31 UTC is 08:31 in Chicago


def _live_bar(bars, i: int, time_text: str) -> dict:
    return {
        "time": time_text,
        "open": float(bars.open[i]),
        "high": float(bars.high[i]),
        "low": float(bars.low[i]),
        "close": float(bars.close[i]),
        "volume": float(bars.volume[i]),
    }


def test_export_and_live_bars_in_utc_or_chicago_give_bit_identical_observations() -> None:
    spec = resolve_contract("NQ")
    bars = load_bars(EXPORT_UTC, contract=spec)
    env = TradingEnv(bars, EnvConfig(instrument=spec, episode_bars=100))
    lines = EXPORT_UTC.read_text().splitlines()
    utc_times = [
        datetime.strptime(line.split(";")[0], "%Y%m%d %H%M%S").strftime("%Y-%m-%dT%H:%M:%SZ")
        for line in lines
    ]
    chicago_times = [str(t) for t in bars.time]
    offset_times = [
        datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(CHICAGO).isoformat()
        for t in utc_times
    ]
    streams = {name: StreamingFeatures(tick_size=spec.tick_size) for name in ("z", "cst", "ofs")}
    for i in range(len(bars)):
        for name, texts in (("z", utc_times), ("cst", chicago_times), ("ofs", offset_times)):
            bar = parse_bar(_live_bar(bars, i, texts[i]), "bar", CHICAGO)
            streams[name].update(
                bar.minute_of_day, bar.open, bar.high, bar.low, bar.close, bar.volume
            )
        if i >= WINDOW_SIZE - 1:
            start = (i + 1) * MARKET_FEATURE_COUNT - TOTAL_MARKET_FEATURES
            expected = env._features_flat[start : start + TOTAL_MARKET_FEATURES]
            for stream in streams.values():
                assert stream.window().tobytes() == expected.tobytes()


def test_daily_bars_time_features_are_zero_and_episodes_short(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    days = np.arange(np.datetime64("2023-01-02"), np.datetime64("2024-12-31"))
    days = days[np.is_busday(days)]
    close = 15000 + np.cumsum(rng.normal(0, 50, len(days)))
    close = np.round(close / 0.25) * 0.25
    lines = [
        f"{str(d).replace('-', '')};{c:.2f};{c + 60:.2f};{c - 60:.2f};{c:.2f};{100000}"
        for d, c in zip(days, close)
    ]
    path = tmp_path / "NQ daily.txt"
    path.write_text("\n".join(lines) + "\n")
    env = TradingEnv(str(path))
    assert env.bars.bar_period == BarPeriod("day", 1)
    assert env.config.episode_bars == 60
    assert np.all(env.market_features[:, 9:11] == 0.0)
    assert math.isfinite(float(env.market_features.std()))
