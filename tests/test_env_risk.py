"""The daemon's risk rails inside the env: the same bars and the same model choices give
the same refusals in the env (what validation measures) as in the daemon (what trades)."""

from __future__ import annotations

import numpy as np
import pytest
from bridge_helpers import StubActor, running_server, serve_config, tiny_bars, with_actor

from bridge.replay import ReplayConfig, run_replay
from env.config import Action
from env.risk import RiskConfig
from env.trading_env import EnvConfig, TradingEnv

pytest_plugins = ["bridge_helpers"]

ONE_ENTRY = RiskConfig(max_entries_per_session=1, session_loss_limit=None, cooldown_losses=None)
ALWAYS_BUY = [0.0, 5.0, 0.0, 0.0, 0.0, 0.0]  # BUY whenever it is allowed
T0, EPISODE = 100, 390


def env_run(bars, config: EnvConfig) -> tuple[list[int], list[str | None], list[float]]:
    """A policy that always wants to buy, in the env: effective action, rule, reward."""
    env = TradingEnv(bars, config)
    env.reset(options={"start": T0})
    actions, rules, rewards = [], [], []
    done = False
    while not done:
        wanted = Action.BUY if env.action_masks()[Action.BUY] else Action.HOLD
        side = env.position
        _, reward, done, _, info = env.step(wanted)
        refused = info.get("risk")
        if wanted == Action.BUY and side == 0 and refused is None:
            actions.append(int(Action.BUY))
        else:
            actions.append(int(Action.HOLD))
        rules.append(None if refused is None else refused["rule"])
        rewards.append(reward)
    return actions, rules, rewards


def test_max_entries_rail_refuses_the_same_entries_in_env_and_daemon(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    bars = tiny_bars()[: T0 + EPISODE + 1]
    config = EnvConfig(episode_bars=EPISODE, risk=ONE_ENTRY)
    actions, rules, rewards = env_run(bars, config)
    assert actions.count(Action.BUY) == 1  # one entry in the session, the first bar
    assert actions[0] == Action.BUY and rules.count("max_entries") > 10
    assert min(rewards) > -10.0  # a refused entry is a HOLD, not an invalid action

    policy = with_actor(tiny_policy, StubActor(ALWAYS_BUY))
    with running_server(serve_config(tiny_bundle, tmp_path, risk=ONE_ENTRY), policy) as server:
        replay = ReplayConfig(endpoint=server.endpoint, history=T0, env=tiny_policy.env_config)
        result = run_replay(bars, replay)
    assert result.errors == result.missed == 0
    served = result.actions[:EPISODE]
    served_rules = [(r.get("risk") or {}).get("rule") for r in result.replies[:EPISODE]]
    assert served == actions
    assert served_rules == rules


def test_rails_off_by_default_and_a_session_change_allows_a_new_entry() -> None:
    bars = tiny_bars()
    plain = TradingEnv(bars, EnvConfig(episode_bars=EPISODE))
    assert plain.config.risk is None and plain.rails is None

    env = TradingEnv(bars, EnvConfig(episode_bars=len(bars) - T0 - 2, risk=ONE_ENTRY))
    env.reset(options={"start": T0})
    sessions, entries = set(), []
    done = False
    while not done:
        t = env.t
        wanted = Action.BUY if env.action_masks()[Action.BUY] else Action.HOLD
        side = env.position
        _, _, done, _, info = env.step(wanted)
        if wanted == Action.BUY and side == 0 and "risk" not in info:
            entries.append(env._session_id[t])
        sessions.add(env._session_id[t])
    assert len(sessions) >= 2
    assert sorted(entries) == sorted(set(entries)) and len(entries) >= 2  # one per session


def test_risk_config_round_trips_through_the_card() -> None:
    config = EnvConfig(risk=ONE_ENTRY)
    assert EnvConfig.from_dict(config.to_dict()) == config
    assert "risk" not in EnvConfig().to_dict()  # cards of models trained without rails


@pytest.mark.parametrize("risk", [None, RiskConfig(enabled=False)])
def test_no_rails_changes_nothing(risk) -> None:
    bars = tiny_bars()[: T0 + EPISODE + 1]
    base = env_run(bars, EnvConfig(episode_bars=EPISODE))
    assert env_run(bars, EnvConfig(episode_bars=EPISODE, risk=risk)) == base
    assert np.isfinite(base[2]).all()


def test_clones_have_their_own_rails() -> None:
    env = TradingEnv(tiny_bars(), EnvConfig(episode_bars=EPISODE, risk=ONE_ENTRY))
    env.reset(options={"start": T0})
    env.step(Action.BUY)
    twin = env.clone()
    assert twin.rails is not env.rails and twin.rails.entries == 0 and env.rails.entries == 1


ALWAYS_HOLD = [5.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_daemon_masks_entries_near_the_close_as_the_env_does(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    """With the rails off, the mask the daemon predicts with is the env's: BUY/SELL off in
    the last minutes before a session close, so the model never decides under a mask it
    was not trained with."""
    bars = tiny_bars()
    steps = len(bars) - T0 - 2
    env = TradingEnv(bars, EnvConfig(episode_bars=steps))
    env.reset(options={"start": T0})
    masks, done = [], False
    while not done:
        masks.append(env.action_masks().tolist())
        _, _, done, _, _ = env.step(Action.HOLD)
    assert [1, 0, 0, 0, 0, 0] in masks and [1, 1, 1, 0, 0, 0] in masks

    off = RiskConfig(enabled=False)
    policy = with_actor(tiny_policy, StubActor(ALWAYS_HOLD))
    with running_server(serve_config(tiny_bundle, tmp_path, risk=off), policy) as server:
        replay = ReplayConfig(endpoint=server.endpoint, history=T0, env=tiny_policy.env_config)
        result = run_replay(bars, replay)
    assert result.errors == result.missed == 0
    assert [r["mask"] for r in result.replies[: len(masks)]] == masks
