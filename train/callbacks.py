"""Training callbacks: the action distribution of each rollout and held-out evaluation,
both split by flat / in position, to the SB3 logger (TensorBoard, stdout)."""

from __future__ import annotations

import numpy as np
import structlog
from stable_baselines3.common.callbacks import BaseCallback

from env.config import ACTION_NAMES, N_ACTIONS, Action
from env.trading_env import TradingEnv
from train.criteria import action_shares, evaluate_criteria, trading_summary
from train.evaluation import ModelPolicy, run_episodes

log = structlog.get_logger()


class ActionDistributionCallback(BaseCallback):
    """Logs ``rollout/flat/<ACTION>`` and ``rollout/in_position/<ACTION>`` shares (%) of
    the actions sampled in each rollout; a bar is flat when its mask forbids MOVE_TO_BE."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer  # type: ignore[attr-defined]
        actions = buffer.actions.reshape(-1).astype(np.int64)
        flat = buffer.action_masks.reshape(-1, N_ACTIONS)[:, Action.MOVE_TO_BE] == 0
        for label, selected in (("flat", flat), ("in_position", ~flat)):
            counts = np.bincount(actions[selected], minlength=N_ACTIONS)
            total = max(int(counts.sum()), 1)
            for name, count in zip(ACTION_NAMES, counts):
                self.logger.record(f"rollout/{label}/{name}", 100.0 * count / total)
        self.logger.record("rollout/in_position_share", 100.0 * float((~flat).mean()))


class HoldoutEvalCallback(BaseCallback):
    """Every ``every`` calls (steps per env), run ``episodes`` held-out episodes with masks,
    deterministically, and log the action shares, the criteria and the trading result."""

    def __init__(self, template: TradingEnv, episodes: int, every: int, seed: int = 0) -> None:
        super().__init__()
        self.template, self.episodes, self.every, self.seed = template, episodes, every, seed

    def _on_step(self) -> bool:
        if self.n_calls % self.every == 0:
            self.evaluate()
        return True

    def evaluate(self) -> None:
        vecnorm = self.model.get_vec_normalize_env()
        policy = ModelPolicy(self.model, vecnorm, deterministic=True, seed=self.seed)
        result = run_episodes(
            policy,
            self.template.bars,
            self.template.config,
            self.episodes,
            seed=self.seed,
            template=self.template,
        )
        shares = action_shares(result)
        for label in ("flat", "in_position"):
            for name, pct in shares[label].items():
                self.logger.record(f"eval/{label}/{name}", pct)
        criteria = evaluate_criteria(result)
        for criterion in criteria:
            self.logger.record(f"eval/criteria/{criterion.name}", criterion.value)
        passed = sum(c.passed for c in criteria)
        trading = trading_summary(result, self.template.config.episode_bars)
        self.logger.record("eval/criteria_passed", passed)
        self.logger.record("eval/net_r_per_episode", trading["net_pnl_r"] / max(self.episodes, 1))
        self.logger.record("eval/trades_per_episode", trading["trades_per_episode"])
        log.info(
            "holdout_eval",
            timesteps=self.num_timesteps,
            criteria_passed=passed,
            **{c.name: round(c.value, 2) for c in criteria},
            net_r=trading["net_pnl_r"],
            trades=trading["trades"],
        )
