"""Sessions in the env: NinjaTrader's Exit on session close, no entries just before a
close, and holidays from the contract's calendar."""

from __future__ import annotations

import numpy as np
import pytest

from env import EnvConfig, TradingEnv
from env.config import Action
from env.execution import ExecutionConfig
from env.mask import entry_blocked_by_close
from env.reward import INVALID_ACTION_PENALTY
from env.synthetic import default_bars

WIDE = ExecutionConfig(stop_atr=50.0, target_atr=50.0)  # no stop or target in reach


def bar_at(bars, text: str) -> int:
    return int(np.flatnonzero(bars.time == np.datetime64(text))[0])


@pytest.fixture(scope="module")
def bars():
    return default_bars()


def test_flattened_at_the_session_close_like_exit_on_session_close(bars) -> None:
    env = TradingEnv(bars, EnvConfig(execution=WIDE, episode_bars=100))
    t0 = bar_at(bars, "2025-01-07T15:30:00")
    env.reset(options={"start": t0})
    env.step(Action.BUY)
    assert env.position == 1
    trade = None
    while trade is None:
        _, _, _, _, info = env.step(Action.HOLD)
        trade = info.get("trade")
    assert trade.exit_reason == "session_close"
    assert str(bars.time[trade.exit_bar]) == "2025-01-07T16:00:00"
    assert env.position == 0
    assert str(bars.time[trade.exit_bar + 1]) == "2025-01-07T17:01:00"  # the gap


def test_position_held_through_the_halt_when_exit_on_close_is_off(bars) -> None:
    config = EnvConfig(execution=WIDE, episode_bars=100, flatten_at_session_close=False)
    env = TradingEnv(bars, config)
    env.reset(options={"start": bar_at(bars, "2025-01-07T15:30:00")})
    env.step(Action.BUY)
    while env.t <= bar_at(bars, "2025-01-07T17:01:00"):
        _, _, _, _, info = env.step(Action.HOLD)
        assert "trade" not in info
    assert env.position == 1


@pytest.mark.parametrize(
    ("time", "entries"),
    [
        ("2025-01-07T15:44:00", True),
        ("2025-01-07T15:45:00", True),  # 15 minutes left: not fewer than 15
        ("2025-01-07T15:46:00", False),
        ("2025-01-07T16:00:00", False),
        ("2025-01-07T17:01:00", True),
        ("2025-01-20T11:50:00", False),  # Martin Luther King Day: early close at 12:00
        ("2025-01-20T11:40:00", True),
    ],
)
def test_no_entries_in_the_last_minutes_before_a_close(bars, time: str, entries: bool) -> None:
    env = TradingEnv(bars, EnvConfig(episode_bars=50))
    env.reset(options={"start": bar_at(bars, time)})
    expected = [1, 1, 1, 0, 0, 0] if entries else [1, 0, 0, 0, 0, 0]
    assert env.action_masks().tolist() == expected
    if not entries:  # an unmasked agent's entry is invalid, not executed
        _, reward, _, _, info = env.step(Action.BUY)
        assert reward == INVALID_ACTION_PENALTY and info["invalid_action"]
        assert env.book.pending_side == 0


def test_holiday_early_close_flattens_at_noon(bars) -> None:
    env = TradingEnv(bars, EnvConfig(execution=WIDE, episode_bars=100))
    env.reset(options={"start": bar_at(bars, "2025-01-20T11:00:00")})
    env.step(Action.SELL)
    trade = None
    while trade is None:
        _, _, _, _, info = env.step(Action.HOLD)
        trade = info.get("trade")
    assert trade.exit_reason == "session_close"
    assert str(bars.time[trade.exit_bar]) == "2025-01-20T12:00:00"


def test_entry_blocked_by_close_rule() -> None:
    assert entry_blocked_by_close(14.9, 15.0)
    assert not entry_blocked_by_close(15.0, 15.0)
    assert not entry_blocked_by_close(float("inf"), 15.0)
    assert not entry_blocked_by_close(None, 15.0)
    assert not entry_blocked_by_close(1.0, 0.0)


def test_random_episode_starts_allow_an_entry() -> None:
    """A reset without a start never opens an episode in the no-entry minutes before a
    session's close (the guide's pre-training test resets and expects BUY/SELL valid)."""
    from env.trading_env import TradingEnv

    env = TradingEnv()
    for seed in range(400):
        env.reset(seed=seed)
        assert env.action_masks().tolist() == [1, 1, 1, 0, 0, 0], (seed, env.t)
