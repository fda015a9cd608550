"""Training/serving parity: replaying bars through the daemon gives the same
observations (bit for bit), actions and trades as running the same policy inside
``TradingEnv`` over the same bars."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from bridge_helpers import running_server, serve_config, tiny_bars

from bridge.replay import ReplayConfig, run_replay
from env.config import ENTRY_ACTIONS, POSITION_MANAGEMENT_ACTIONS, Action
from env.risk import RiskConfig
from env.trading_env import TradingEnv

pytest_plugins = ["bridge_helpers"]

EPISODES = (100, 1500)  # decision bars t0 at which the compared episodes start


def run_in_env(policy, vecnorm, bars, t0: int):
    """The policy inside the env, as training/validation runs it."""
    env = TradingEnv(bars, policy.env_config)
    obs, _ = env.reset(options={"start": t0})
    observations, actions, trades = [obs], [], []
    terminated = False
    while not terminated:
        mask = env.action_masks()
        action, _ = policy.model.predict(
            vecnorm.normalize_obs(obs), action_masks=mask, deterministic=True
        )
        side = env.position
        obs, _, terminated, _, info = env.step(int(action))
        actions.append((int(action), side))
        observations.append(obs)
        if "trade" in info:
            trades.append(info["trade"])
    return observations, actions, trades


@pytest.mark.parametrize("t0", EPISODES)
def test_replay_through_daemon_matches_the_env_bit_for_bit(
    tiny_bundle, tiny_policy, tmp_path, t0
) -> None:
    episode = tiny_policy.env_config.episode_bars
    bars = tiny_bars()[: t0 + episode + 1]  # the env computes features from bar 0 of these
    with open(tiny_bundle / "vecnormalize.pkl", "rb") as f:
        vecnorm = pickle.load(f)
    env_obs, env_actions, env_trades = run_in_env(tiny_policy, vecnorm, bars, t0)

    # The env runs without risk rails, so the daemon's are off here: this is the parity
    # of features, mask, policy and order pricing.
    config = serve_config(tiny_bundle, tmp_path, risk=RiskConfig(enabled=False))
    with running_server(config, tiny_policy) as server:
        config = ReplayConfig(
            endpoint=server.endpoint, history=t0, debug=True, env=tiny_policy.env_config
        )
        result = run_replay(bars, config)

    assert result.missed == result.errors == 0
    assert len(result.observations) == len(env_obs) == episode + 1
    for k, (served, trained) in enumerate(zip(result.observations[:-1], env_obs[:-1])):
        assert served.tobytes() == trained.tobytes(), f"observation {k} differs"
    # the env's terminal observation comes after its end-of-episode flatten; the daemon's
    # last one still has the position (NinjaTrader flattens after it): compare the market
    np.testing.assert_array_equal(result.observations[-1][:220], env_obs[-1][:220])
    for k, (action, side) in enumerate(env_actions):
        expected = Action.HOLD if side != 0 and action in ENTRY_ACTIONS else action
        assert result.actions[k] == expected, f"decision {k} at bar {t0 + k}"
        assert result.sides[k] == side
    assert result.trades == env_trades
    # the episode is not vacuous: entries, trades and position management all happened
    assert len(env_trades) >= 3
    assert any(a in POSITION_MANAGEMENT_ACTIONS for a in result.actions)
    assert any(r.get("guarded") for r in result.replies) == any(
        side != 0 and action in ENTRY_ACTIONS for action, side in env_actions
    )
