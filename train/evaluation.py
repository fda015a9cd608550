"""Vectorised episode runner for validation, baselines and in-training evaluation.

Many :class:`~env.trading_env.TradingEnv` copies are stepped in lock-step; each step, the
observations of all of them are normalised with the saved VecNormalize statistics in one
batch and the policy runs one batched, masked forward pass. The position is read from
each env's state (``env.position``), never from the observation (the guide's
``obs[-5]`` is wrong with eight position features and with normalised observations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from env.bars import Bars
from env.config import MARKET_FEATURE_COUNT, N_ACTIONS, TOTAL_OBSERVATION_SIZE, WINDOW_SIZE, Action
from env.trading_env import EnvConfig, TradingEnv

# A policy maps raw observations (n, 228) and masks (n, 6) to actions (n,).
PolicyFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

DEFAULT_PARALLEL = 100


@dataclass
class RunResult:
    """What a policy did over a set of episodes.

    Attributes:
        flat_counts, position_counts: Decisions per action id, taken flat / in a position.
        invalid_actions: Decisions the env refused (penalised, not executed).
        episode_pnl, episode_r: Net PnL per episode in dollars and in R.
        trade_pnl, trade_r: Net PnL per closed trade, in episode order.
        episode_trades: Trades per episode.
        risk_refusals: Entries the risk rails (``EnvConfig.risk``) turned into HOLD, by
            rule.
    """

    flat_counts: np.ndarray = field(default_factory=lambda: np.zeros(N_ACTIONS, np.int64))
    position_counts: np.ndarray = field(default_factory=lambda: np.zeros(N_ACTIONS, np.int64))
    invalid_actions: int = 0
    episode_pnl: np.ndarray = field(default_factory=lambda: np.zeros(0))
    episode_r: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trade_pnl: list[float] = field(default_factory=list)
    trade_r: list[float] = field(default_factory=list)
    episode_trades: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    risk_refusals: dict[str, int] = field(default_factory=dict)

    @property
    def decisions(self) -> int:
        return int(self.flat_counts.sum() + self.position_counts.sum())


def episode_starts(
    bars_count: int, env_config: EnvConfig, n_episodes: int, seed: int
) -> np.ndarray:
    """Random episode start bars, reproducible from ``seed`` (the env's own valid range)."""
    from env.config import WARMUP_BARS

    first = WARMUP_BARS - 1
    last = bars_count - 1 - env_config.episode_bars
    if last < first:
        raise ValueError(
            f"{bars_count} bars is too short for episodes of {env_config.episode_bars} bars"
        )
    return np.random.default_rng(seed).integers(first, last + 1, size=n_episodes)


def run_episodes(
    policy: PolicyFn,
    bars: Bars,
    env_config: EnvConfig,
    n_episodes: int,
    seed: int = 0,
    n_parallel: int = DEFAULT_PARALLEL,
    template: TradingEnv | None = None,
) -> RunResult:
    """Run ``n_episodes`` episodes of ``policy`` on ``bars``, ``n_parallel`` at a time."""
    template = template or TradingEnv(bars, env_config)
    starts = episode_starts(len(template.bars), env_config, n_episodes, seed)
    envs = [template.clone() for _ in range(min(n_parallel, n_episodes))]
    result = RunResult(
        episode_pnl=np.zeros(n_episodes),
        episode_r=np.zeros(n_episodes),
        episode_trades=np.zeros(n_episodes, np.int64),
    )
    obs = np.zeros((len(envs), TOTAL_OBSERVATION_SIZE), np.float32)
    episode_of = np.full(len(envs), -1)
    next_episode = 0
    for slot, env in enumerate(envs):
        obs[slot] = env.reset(options={"start": int(starts[next_episode])})[0]
        episode_of[slot] = next_episode
        next_episode += 1
    active = list(range(len(envs)))
    while active:
        masks = np.stack([envs[i].action_masks() for i in active])
        actions = policy(obs[active], masks)
        still_active = []
        for slot, action in zip(active, actions.tolist()):
            env = envs[slot]
            counts = result.flat_counts if env.position == 0 else result.position_counts
            counts[action] += 1
            observation, _, terminated, truncated, info = env.step(action)
            obs[slot] = observation
            episode = episode_of[slot]
            if info.get("invalid_action"):
                result.invalid_actions += 1
            refusal = info.get("risk")
            if refusal is not None:
                rule = refusal["rule"]
                result.risk_refusals[rule] = result.risk_refusals.get(rule, 0) + 1
            trade = info.get("trade")
            if trade is not None:
                result.episode_pnl[episode] += trade.pnl_dollars
                result.episode_r[episode] += trade.r_multiple
                result.episode_trades[episode] += 1
                result.trade_pnl.append(trade.pnl_dollars)
                result.trade_r.append(trade.r_multiple)
            if terminated or truncated:
                if next_episode >= n_episodes:
                    continue
                obs[slot] = env.reset(options={"start": int(starts[next_episode])})[0]
                episode_of[slot] = next_episode
                next_episode += 1
            still_active.append(slot)
        active = still_active
    return result


# -- policies ---------------------------------------------------------------------------


def numpy_actor(policy) -> list[tuple[np.ndarray, np.ndarray, str]] | None:
    """The actor of a standard SB3 MLP policy (flatten extractor, Linear + Tanh/ReLU
    layers, linear action head) as float32 numpy ``(weight, bias, activation)`` layers;
    None for any other architecture. One decision at a time (the contiguous walk), numpy
    is ~50x faster than a torch forward pass plus a masked distribution."""
    from stable_baselines3.common.torch_layers import FlattenExtractor
    from torch import nn

    if not isinstance(getattr(policy, "pi_features_extractor", None), FlattenExtractor):
        return None
    layers: list[tuple[np.ndarray, np.ndarray, str]] = []
    for module in policy.mlp_extractor.policy_net:
        if isinstance(module, nn.Linear):
            layers.append(
                (
                    module.weight.detach().cpu().numpy().T.astype(np.float32),
                    module.bias.detach().cpu().numpy().astype(np.float32),
                    "",
                )
            )
        elif isinstance(module, nn.Tanh | nn.ReLU) and layers and not layers[-1][2]:
            weight, bias, _ = layers[-1]
            layers[-1] = (weight, bias, "tanh" if isinstance(module, nn.Tanh) else "relu")
        else:
            return None
    head = policy.action_net
    if not isinstance(head, nn.Linear):
        return None
    layers.append(
        (
            head.weight.detach().cpu().numpy().T.astype(np.float32),
            head.bias.detach().cpu().numpy().astype(np.float32),
            "",
        )
    )
    return layers


def actor_logits(layers: list[tuple[np.ndarray, np.ndarray, str]], x: np.ndarray) -> np.ndarray:
    """Action logits of :func:`numpy_actor` layers for normalised observations,
    shape ``(n, 228)`` -> ``(n, 6)``."""
    for weight, bias, activation in layers:
        x = x @ weight + bias
        if activation == "tanh":
            x = np.tanh(x)
        elif activation == "relu":
            x = np.maximum(x, 0.0)
    return x


class ModelPolicy:
    """A MaskablePPO policy behind saved VecNormalize statistics, batched and masked.
    Deterministic decisions of a standard MLP run in numpy (:func:`numpy_actor`): the
    argmax of the masked logits, which is the distribution's mode."""

    def __init__(self, model, vecnorm, deterministic: bool = True, seed: int = 0) -> None:
        import torch

        self._torch = torch
        self.model = model
        self.vecnorm = vecnorm
        self.deterministic = deterministic
        self._actor = numpy_actor(model.policy) if deterministic else None
        torch.manual_seed(seed)

    def __call__(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        torch = self._torch
        normalized = self.vecnorm.normalize_obs(obs).astype(np.float32)
        if self._actor is not None:
            x = actor_logits(self._actor, normalized)
            return np.where(masks.astype(bool), x, -np.inf).argmax(axis=1).astype(np.int64)
        policy = self.model.policy
        with torch.no_grad():
            tensor = torch.as_tensor(normalized, device=policy.device)
            dist = policy.get_distribution(tensor, action_masks=masks.astype(bool))
            actions = dist.mode() if self.deterministic else dist.sample()
        return actions.cpu().numpy().astype(np.int64)


def always_flat_policy(obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Baseline: HOLD on every bar."""
    return np.zeros(len(obs), np.int64)


class RandomValidPolicy:
    """Baseline: a uniformly random action among those the mask allows."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        scores = self.rng.random(masks.shape) * masks
        return scores.argmax(axis=1).astype(np.int64)


# Last bar's features in the raw observation (oldest bar first, bar-major).
_LAST_BAR = (WINDOW_SIZE - 1) * MARKET_FEATURE_COUNT
CLOSE_EMA_INDEX = _LAST_BAR + 5  # (close - EMA20) / ATR
EMA_SLOPE_INDEX = _LAST_BAR + 6  # (EMA20 - EMA20[t-5]) / ATR
MOMENTUM_THRESHOLD = 0.5


def momentum_policy(obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Baseline: when flat, follow the EMA20 trend once its 5-bar slope exceeds half an
    ATR and price is on the trend's side of the EMA; hold positions to stop or target."""
    slope = obs[:, EMA_SLOPE_INDEX]
    above = obs[:, CLOSE_EMA_INDEX]
    can_buy, can_sell = masks[:, Action.BUY] > 0, masks[:, Action.SELL] > 0
    flat = masks[:, Action.MOVE_TO_BE] == 0
    actions = np.zeros(len(obs), np.int64)
    actions[flat & can_buy & (slope > MOMENTUM_THRESHOLD) & (above > 0)] = Action.BUY
    actions[flat & can_sell & (slope < -MOMENTUM_THRESHOLD) & (above < 0)] = Action.SELL
    return actions
