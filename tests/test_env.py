"""TradingEnv: gymnasium conformance, determinism, masks, invalid actions, episodes."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from env import EnvConfig, ExecutionConfig, TradingEnv, generate_bars
from env.config import WARMUP_BARS, Action
from env.features import compute_market_features
from env.reward import REWARD_PRESETS, default_reward, seed_reward


@pytest.fixture(scope="module")
def bars():
    return generate_bars(n_days=3, seed=11)


def _rollout(env: TradingEnv, seed: int, n: int = 600) -> list[tuple]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = [obs.tobytes()]
    for _ in range(n):
        action = int(rng.choice(np.flatnonzero(env.action_masks())))
        obs, reward, terminated, truncated, _ = env.step(action)
        out.append((obs.tobytes(), reward, terminated, truncated))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append(obs.tobytes())
    return out


def test_check_env_passes(bars) -> None:
    check_env(TradingEnv(bars), skip_render_check=True)


def test_same_seed_identical_rollouts_different_seed_differs(bars) -> None:
    assert _rollout(TradingEnv(bars), 5) == _rollout(TradingEnv(bars), 5)
    assert _rollout(TradingEnv(bars), 5) != _rollout(TradingEnv(bars), 6)


def test_default_construction_uses_embedded_data() -> None:
    env = TradingEnv()
    obs, info = env.reset(seed=0)
    assert obs.shape == (228,) and obs.dtype == np.float32
    assert info["position"] == 0
    assert env.bars.source.startswith("synthetic:")


def test_invalid_action_not_executed_time_frozen_same_obs(bars) -> None:
    env = TradingEnv(bars)
    obs, _ = env.reset(seed=1)
    t = env.t
    for action in (Action.MOVE_TO_BE, Action.ENABLE_TRAIL, Action.DISABLE_TRAIL):
        obs2, reward, terminated, truncated, info = env.step(action)
        assert reward == -10.0 and not terminated and not truncated
        assert np.array_equal(obs, obs2) and env.t == t
        assert info["invalid_action"] is True and info["action"] == action
        assert info["position"] == 0 and "invalid when position=0" in info["reason"]


def test_invalid_streak_truncates_episode(bars) -> None:
    env = TradingEnv(bars, EnvConfig(max_invalid_streak=3))
    env.reset(seed=0)
    truncated = [env.step(3)[3] for _ in range(3)]
    assert truncated == [False, False, True]


def test_entry_while_in_position_penalised_not_executed_time_advances(bars) -> None:
    env = _open_long_far_from_exits(bars, "default")
    entry, t = env.book.entry_price, env.t
    _, reward, _, _, info = env.step(Action.SELL)
    assert env.position == 1 and env.book.entry_price == entry
    assert reward == -10.0 and "trade" not in info
    assert env.t == t + 1 and env.book.pending_side == 0


def test_buy_fills_next_open_with_bracket_and_position_features(bars) -> None:
    env = TradingEnv(bars, EnvConfig(reward="seed"))
    env.reset(options={"start": 500})
    close, atr = env.current_price, env.current_atr
    obs, reward, *_, info = env.step(Action.BUY)
    assert "trade" not in info  # bar 501 touches neither stop nor target
    assert env.position == 1
    assert env.book.entry_price == bars.open[501] + 0.25
    assert env.book.stop_price < close < env.book.target_price
    assert reward == pytest.approx(0.1)
    position = obs[-8:]
    assert position[0] == 1.0 and position[4] == 0.0
    assert position.tolist()[5:] == [0.0, 1.0, 1.0]
    assert position[1] == np.float32(env.book.entry_price / bars.close[501])
    assert atr > 0


def test_episode_terminates_after_episode_bars_and_flattens(bars) -> None:
    env = TradingEnv(bars, EnvConfig(episode_bars=10))
    env.reset(seed=3)
    terminated = False
    steps = 0
    env.step(Action.BUY)
    steps += 1
    while not terminated:
        _, _, terminated, _, _ = env.step(Action.HOLD)
        steps += 1
    assert steps == 10 and env.position == 0


def test_observation_window_matches_batch_features(bars) -> None:
    env = TradingEnv(bars)
    obs, _ = env.reset(options={"start": 300})
    features, _ = compute_market_features(
        bars.open, bars.high, bars.low, bars.close, bars.volume, bars.minute_of_day
    )
    assert np.array_equal(obs[:220], features[281:301].reshape(-1))


def test_episode_starts_leave_warmup_history(bars) -> None:
    env = TradingEnv(bars)
    starts = set()
    for seed in range(50):
        env.reset(seed=seed)
        starts.add(env.t)
    assert min(starts) >= WARMUP_BARS - 1
    assert max(starts) <= len(bars) - 1 - env.config.episode_bars


def test_reset_start_out_of_range_is_rejected(bars) -> None:
    with pytest.raises(ValueError, match="out of range"):
        TradingEnv(bars).reset(options={"start": 0})


def test_too_short_series_rejected_with_reason() -> None:
    with pytest.raises(ValueError, match="too short"):
        TradingEnv(generate_bars(n_days=1)[:100])


@pytest.mark.parametrize(
    ("action", "before", "after", "expected"),
    [
        (0, 0, 0, 0.01),
        (0, 1, 1, 0.0),
        (1, 0, 1, 0.1),
        (2, 0, 0, -1.0),
        (1, 1, 1, -10.0),
        (3, 0, 0, -10.0),
        (3, 1, 1, 0.5),
        (4, -1, -1, 0.5),
        (5, 1, 1, 0.2),
    ],
)
def test_seed_reward_is_the_guides_table(action, before, after, expected) -> None:
    assert seed_reward(action, before, after, changed=False, first_in_trade=False) == expected


@pytest.mark.parametrize("action", [3, 4, 5])
def test_default_reward_pays_management_at_most_once_and_nothing_for_no_ops(action) -> None:
    first = default_reward(action, 1, 1, changed=True, first_in_trade=True)
    again = default_reward(action, 1, 1, changed=True, first_in_trade=False)
    no_op = default_reward(action, 1, 1, changed=False, first_in_trade=True)
    assert again <= 0.0 and no_op <= 0.0
    assert first < seed_reward(action, 1, 1, changed=True, first_in_trade=True)
    assert default_reward(action, 0, 0, changed=False, first_in_trade=True) == -10.0


def test_default_reward_entry_bonus_never_exceeds_the_guides() -> None:
    for action in (1, 2):
        assert default_reward(action, 0, 1, changed=True, first_in_trade=True) <= 0.1
        assert default_reward(action, 1, 1, changed=False, first_in_trade=True) == -10.0


def _open_long_far_from_exits(bars, reward: str) -> TradingEnv:
    wide = ExecutionConfig(trail_atr=1e6)
    env = TradingEnv(bars, EnvConfig(reward=reward, execution=wide))
    env.reset(options={"start": 400})
    env.position = 1
    env.book.stop_price, env.book.target_price = 1.0, 1e9  # the trade stays open
    return env


def test_default_preset_toggling_trail_earns_no_more_than_enabling_once(bars) -> None:
    env = _open_long_far_from_exits(bars, "default")
    once = env.step(4)[1]
    assert once > 0.0  # a first real ENABLE_TRAIL adds protection
    toggles = [env.step(a)[1] for a in (5, 4, 5, 4, 5, 4)]
    assert sum(toggles) <= 0.0 and once + sum(toggles) <= once
    repeats = [env.step(4)[1] for _ in range(3)]  # trailing already on: a no-op
    assert max(repeats) <= 0.0


def test_seed_preset_pays_every_repeat(bars) -> None:
    env = _open_long_far_from_exits(bars, "seed")
    assert [env.step(4)[1] for _ in range(3)] == [0.5, 0.5, 0.5]


def test_config_roundtrip_and_unknown_keys() -> None:
    config = EnvConfig(reward="seed", episode_bars=50)
    assert EnvConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown env config keys"):
        EnvConfig.from_dict({"rewrd": "seed"})
    with pytest.raises(ValueError, match="unknown reward preset"):
        EnvConfig(reward="greedy")
    assert set(REWARD_PRESETS) == {"constrained", "default", "seed"}


def test_clone_shares_features_but_not_position_or_rng(bars) -> None:
    env = TradingEnv(bars)
    env.reset(seed=4)
    env.position = 1
    twin = env.clone()
    assert twin.market_features is env.market_features
    assert twin.position == 0 and env.position == 1
    twin.reset(seed=4)
    env.reset(seed=4)
    assert twin.t == env.t
    twin.step(Action.BUY)
    assert env.position == 0 and env.t != twin.t
