"""The guide's action-share bands as training constraints: Lagrange multipliers by dual ascent.

The validation criteria (``train.criteria``) ask, on flat bars, for HOLD 80-90% and BUY and
SELL 5-10% each, and on in-position bars for position management (PM) 40-60%. PM on
flat bars is masked, so "PM < 1% of flat bars" holds by construction and needs no term.

Each band ``low <= share <= high`` is a pair of inequality constraints on the policy's
action distribution. Their Lagrangian relaxation adds, to the reward of the constrained
actions, ``mu_low - mu_high`` with multipliers ``mu >= 0``; dual ascent raises ``mu_low``
while the measured share is below ``low`` and ``mu_high`` while it is above ``high``, and
lets them decay inside the band (projected gradient step on the dual, Boyd and
Vandenberghe, *Convex Optimization*, 5.5; the constrained-RL form is Altman 1999 and
Tessler et al. 2019, "Reward Constrained Policy Optimization"). The step is taken once
per PPO rollout, before the policy update, so the multipliers move on a slower time
scale than the policy.

Which shares: validation runs the policy deterministically (the argmax), and the argmax
of a policy that samples HOLD 84% of the time can pick HOLD on 93% of the bars (measured:
200k steps, seed 0). So by default the step uses the shares of the policy's *argmax*
actions on the rollout's observations (one batched forward pass per rollout), the
quantity validation checks; ``measure="sampled"`` uses the sampled actions instead.

The multipliers become the ``constrained`` reward preset's shaping terms
(``env.reward.shaping_reward``): ``hold_bonus`` (HOLD when flat), ``buy_cost`` and
``sell_cost`` (entries), ``management_cost`` (PM in a position); units are R per
decision, like the rest of the reward. The bands are tightened by ``margin`` points so
the policy settles inside them rather than on an edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from env.config import N_ACTIONS, Action

# term -> (state, actions, band low %, band high %, sign): the term's reward is
# sign x (mu_low - mu_high): a bonus for HOLD, a cost for the others.
BANDS: dict[str, tuple[str, tuple[int, ...], float, float, float]] = {
    "hold_bonus": ("flat", (Action.HOLD,), 80.0, 90.0, 1.0),
    "buy_cost": ("flat", (Action.BUY,), 5.0, 10.0, -1.0),
    "sell_cost": ("flat", (Action.SELL,), 5.0, 10.0, -1.0),
    "management_cost": (
        "in_position",
        (Action.MOVE_TO_BE, Action.ENABLE_TRAIL, Action.DISABLE_TRAIL),
        40.0,
        60.0,
        -1.0,
    ),
}
DEFAULT_DUAL_LR = 0.05  # R per decision per unit (fraction) of violation, per rollout
DEFAULT_MARGIN = 1.0  # percentage points inside each band edge
MEASURES = ("deterministic", "sampled")
MAX_MULTIPLIER = 2.0  # R per decision; beyond this a term dwarfs any trade's PnL
HISTORY_POINTS = 50


def rollout_shares(actions: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """Percent of flat and in-position decisions per action id (a bar is flat when its
    mask forbids MOVE_TO_BE). Shapes: ``actions (n,)``, ``masks (n, 6)``."""
    actions = actions.reshape(-1).astype(np.int64)
    flat = masks.reshape(-1, N_ACTIONS)[:, Action.MOVE_TO_BE] == 0
    shares = {}
    for label, selected in (("flat", flat), ("in_position", ~flat)):
        counts = np.bincount(actions[selected], minlength=N_ACTIONS).astype(float)
        total = counts.sum()
        shares[label] = 100.0 * counts / total if total else np.full(N_ACTIONS, np.nan)
    return shares


@dataclass
class DualAscent:
    """Multipliers of the four bands and their update rule.

    Attributes:
        lr: Step per unit (fraction 0..1) of violation, per rollout.
        margin: Points by which each band is tightened.
        low, high: ``mu >= 0`` per term for the lower and the upper edge.
    """

    lr: float = DEFAULT_DUAL_LR
    measure: str = "deterministic"
    kp: float = 0.0  # proportional gain on the current violation (PID Lagrangian's P)
    margin: float = DEFAULT_MARGIN
    low: dict[str, float] = field(default_factory=lambda: dict.fromkeys(BANDS, 0.0))
    high: dict[str, float] = field(default_factory=lambda: dict.fromkeys(BANDS, 0.0))
    updates: int = 0
    violation: dict[str, float] = field(default_factory=lambda: dict.fromkeys(BANDS, 0.0))
    history: list[dict[str, Any]] = field(default_factory=list)

    def terms(self) -> dict[str, float]:
        """Shaping terms for ``TradingEnv.set_shaping``."""
        return {
            name: band[4] * (self.low[name] - self.high[name] + self.kp * self.violation[name])
            for name, band in BANDS.items()
        }

    def update(self, shares: dict[str, np.ndarray], timesteps: int = 0) -> dict[str, float]:
        """One projected dual step from a rollout's measured shares (percent); a term
        whose state never occurred (no in-position bar) is left alone."""
        measured = {}
        for name, (state, ids, low, high, _) in BANDS.items():
            share = float(np.sum(shares[state][list(ids)]))
            if np.isnan(share):
                continue
            measured[name] = share
            below = (low + self.margin - share) / 100.0
            above = (share - (high - self.margin)) / 100.0
            self.violation[name] = max(below, 0.0) - max(above, 0.0)
            self.low[name] = float(np.clip(self.low[name] + self.lr * below, 0, MAX_MULTIPLIER))
            self.high[name] = float(np.clip(self.high[name] + self.lr * above, 0, MAX_MULTIPLIER))
        self.updates += 1
        self.history.append({"timesteps": timesteps, "shares_pct": measured, "terms": self.terms()})
        return measured

    def state(self) -> dict[str, Any]:
        """What a checkpoint stores so that a resumed run continues from these
        multipliers (and this history) instead of from 0; plain JSON."""
        return {
            "low": dict(self.low),
            "high": dict(self.high),
            "violation": dict(self.violation),
            "updates": self.updates,
            "history": list(self.history),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` (``history`` optional).

        Raises:
            ValueError: when the state names other bands than ``BANDS``.
        """
        for key in ("low", "high", "violation"):
            values = state[key]
            if set(values) != set(BANDS):
                raise ValueError(
                    f"stored multipliers {key!r} are for bands {sorted(values)}, "
                    f"expected {sorted(BANDS)}"
                )
            setattr(self, key, {name: float(values[name]) for name in BANDS})
        self.updates = int(state["updates"])
        self.history = list(state.get("history", []))

    def to_card(self) -> dict[str, Any]:
        """What the model card stores: the bands, the final terms and a thinned history."""
        step = max(len(self.history) // HISTORY_POINTS, 1)
        thinned = self.history[::step]
        if self.history and thinned[-1] is not self.history[-1]:
            thinned.append(self.history[-1])
        rounded = [
            {
                "timesteps": h["timesteps"],
                "shares_pct": {k: round(v, 2) for k, v in h["shares_pct"].items()},
                "terms": {k: round(v, 5) for k, v in h["terms"].items()},
            }
            for h in thinned
        ]
        return {
            "method": "Lagrange multipliers by projected dual ascent on rollout action shares",
            "dual_lr": self.lr,
            "dual_kp": self.kp,
            "measure": self.measure,
            "margin_pct": self.margin,
            "bands_pct": {name: [band[2], band[3]] for name, band in BANDS.items()},
            "updates": self.updates,
            "final_terms": {k: round(v, 5) for k, v in self.terms().items()},
            "multipliers": {k: self.state()[k] for k in ("low", "high", "violation")},
            "history": rounded,
        }


def make_callback(dual: DualAscent) -> Any:
    """An SB3 callback that, at the end of each rollout, measures the shares, takes a
    dual step, sets the new terms on every env and logs both (``shaping/*``)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class LagrangianShapingCallback(BaseCallback):
        def _on_training_start(self) -> None:
            self.training_env.env_method("set_shaping", dual.terms())

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            buffer = self.model.rollout_buffer  # type: ignore[attr-defined]
            masks = buffer.action_masks.reshape(-1, N_ACTIONS)
            sampled = rollout_shares(buffer.actions, masks)
            greedy = rollout_shares(self._argmax(buffer.observations, masks), masks)
            for label, shares in (("sampled", sampled), ("argmax", greedy)):
                self.logger.record(f"shaping/{label}_hold_flat", float(shares["flat"][0]))
            measured = dual.update(
                greedy if dual.measure == "deterministic" else sampled, self.num_timesteps
            )
            terms = dual.terms()
            self.training_env.env_method("set_shaping", terms)
            for name, value in terms.items():
                self.logger.record(f"shaping/{name}", value)
            for name, value in measured.items():
                self.logger.record(f"shaping/share_{name.split('_')[0]}", value)

        def _argmax(self, observations: np.ndarray, masks: np.ndarray) -> np.ndarray:
            import torch

            policy = self.model.policy
            obs = observations.reshape(len(masks), -1)
            with torch.no_grad():
                tensor = torch.as_tensor(obs, device=policy.device)
                dist = policy.get_distribution(tensor, action_masks=masks.astype(bool))  # type: ignore[operator]
                return dist.mode().cpu().numpy()

    return LagrangianShapingCallback()
