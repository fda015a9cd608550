"""Band calibration: put a trained policy's decisions at the centre of the guide's bands.

Validation (and the daemon) act on the argmax of the masked action logits. The
``constrained`` preset steers training towards the guide's action-share bands, but the
argmax of a policy whose logits are close between HOLD and an entry can move several
points between two rollouts (measured: 88.4/6.7/4.8% HOLD/BUY/SELL at 100k steps, 65.6/
22.5/11.9% at 200k, same command). This step fixes the decision thresholds after training,
the way a classifier's threshold is calibrated: one offset per action is added to the
logits (in the action head's bias, so ``model.zip``, ``policy.npz`` and the daemon all
carry it and nothing downstream changes) so that, on the policy's own deterministic
episodes over the **training** bars, the shares sit at the band centres:

- flat bars: HOLD 85%, BUY 7.5%, SELL 7.5% (offsets of BUY and SELL against HOLD);
- in-position bars: position management 50% (one common offset of MOVE_TO_BE,
  ENABLE_TRAIL and DISABLE_TRAIL, so their learned order among themselves is kept).

The held-out bars are never read, so validation stays an out-of-sample check. Which bars
are flat or in a position depends on the decisions, so the offsets are solved on the
recorded logits, the episodes are run again with them, and this repeats until the
measured shares are inside the tightened bands (a fixed-point iteration, ``rounds`` at
most). Each solve is a monotone one-dimensional bisection per offset (a higher offset
never lowers its action's share), alternated between BUY and SELL until both settle.

Adding a constant to a logit changes which action is the argmax only where the two
actions were within that constant of each other: the learned ranking of states is kept,
only the cut-off moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from env.bars import Bars
from env.config import N_ACTIONS, Action
from env.trading_env import EnvConfig
from train.evaluation import RunResult, actor_logits, numpy_actor, run_episodes

PM_IDS = (Action.MOVE_TO_BE, Action.ENABLE_TRAIL, Action.DISABLE_TRAIL)
# Band centres (percent): flat HOLD/BUY/SELL and in-position PM.
TARGET_BUY_FLAT = 7.5
TARGET_SELL_FLAT = 7.5
TARGET_PM_IN_POSITION = 50.0
# A round is accepted when every measured share is this many points inside its band.
ACCEPT_MARGIN = 1.5
MAX_OFFSET = 30.0  # logit units; beyond this the action head is being overruled, not calibrated
BISECTION_STEPS = 40
DEFAULT_EPISODES = 300
DEFAULT_ROUNDS = 5
DEFAULT_SEED = 777  # episode starts on the training bars (validation uses its own seed)


@dataclass
class Calibration:
    """The outcome of :func:`calibrate`.

    Attributes:
        offsets: Logit offset per action id (shape (6,)); HOLD's is 0.
        before, after: Measured shares (percent) of the uncalibrated and the calibrated
            policy on the training bars: ``{"hold_flat", "buy_flat", "sell_flat",
            "pm_in_position", "invalid_pct"}``.
        rounds: Rounds run; ``converged``: whether the last one met every band.
        skipped: Why nothing was changed (not a standard MLP policy), else None.
    """

    offsets: np.ndarray = field(default_factory=lambda: np.zeros(N_ACTIONS))
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    rounds: int = 0
    converged: bool = False
    episodes: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None

    def to_card(self) -> dict[str, Any]:
        """What the model card stores under ``calibration``."""
        from env.config import ACTION_NAMES

        return {
            "method": "logit offsets in the action head's bias, solved on deterministic "
            "episodes over the training bars (held-out bars unread)",
            "targets_pct": {
                "hold_flat": 100.0 - TARGET_BUY_FLAT - TARGET_SELL_FLAT,
                "buy_flat": TARGET_BUY_FLAT,
                "sell_flat": TARGET_SELL_FLAT,
                "pm_in_position": TARGET_PM_IN_POSITION,
            },
            "offsets": {n: float(v) for n, v in zip(ACTION_NAMES, self.offsets)},
            "before_pct": self.before,
            "after_pct": self.after,
            "rounds": self.rounds,
            "converged": self.converged,
            "episodes_per_round": self.episodes,
            "skipped": self.skipped,
        }


def shares_of(result: RunResult) -> dict[str, float]:
    """The four band shares and the invalid-action rate of a run, in percent."""
    flat, pos = result.flat_counts, result.position_counts
    n_flat, n_pos = max(int(flat.sum()), 1), max(int(pos.sum()), 1)
    return {
        "hold_flat": round(float(100.0 * flat[Action.HOLD] / n_flat), 3),
        "buy_flat": round(float(100.0 * flat[Action.BUY] / n_flat), 3),
        "sell_flat": round(float(100.0 * flat[Action.SELL] / n_flat), 3),
        "pm_in_position": round(float(100.0 * pos[list(PM_IDS)].sum() / n_pos), 3),
        "invalid_pct": round(100.0 * result.invalid_actions / max(result.decisions, 1), 3),
    }


def within_bands(shares: dict[str, float], margin: float = ACCEPT_MARGIN) -> bool:
    """Whether every share is ``margin`` points inside its band (HOLD 80-90, BUY and
    SELL 5-10, PM 40-60)."""
    return (
        80 + margin <= shares["hold_flat"] <= 90 - margin
        and 5 + margin <= shares["buy_flat"] <= 10 - margin
        and 5 + margin <= shares["sell_flat"] <= 10 - margin
        and 40 + margin <= shares["pm_in_position"] <= 60 - margin
    )


def masked_argmax(logits: np.ndarray, masks: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Argmax of ``logits + offsets`` over the valid actions. Shapes ``(n, 6)`` -> ``(n,)``."""
    return np.where(masks.astype(bool), logits + offsets, -np.inf).argmax(axis=1)


def _bisect(share_at: Any, target: float) -> float:
    """The offset at which ``share_at(offset)`` (non-decreasing) crosses ``target``."""
    lo, hi = -MAX_OFFSET, MAX_OFFSET
    if share_at(hi) < target:
        return hi
    if share_at(lo) >= target:
        return lo
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if share_at(mid) < target:
            lo = mid
        else:
            hi = mid
    return hi


def solve_offsets(logits: np.ndarray, masks: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Offsets that put the argmax shares of recorded decisions at the band centres.

    Args:
        logits: Uncalibrated action logits, shape ``(n, 6)``.
        masks: The masks they were taken under, shape ``(n, 6)``; a row is flat when
            MOVE_TO_BE is masked (``env.mask``).
        start: Offsets to start from (the previous round's), shape ``(6,)``.

    Returns:
        Offsets, shape ``(6,)``, HOLD's 0. An offset whose state never occurs (no
        in-position rows) keeps its start value.
    """
    offsets = np.array(start, dtype=np.float64)
    offsets[Action.HOLD] = 0.0
    flat = masks[:, Action.MOVE_TO_BE] == 0
    lf, mf = logits[flat], masks[flat]
    if len(lf):
        for _ in range(30):
            previous = offsets.copy()
            for action, target in ((Action.BUY, TARGET_BUY_FLAT), (Action.SELL, TARGET_SELL_FLAT)):

                def share(value: float, action: int = action) -> float:
                    trial = offsets.copy()
                    trial[action] = value
                    return 100.0 * float(np.mean(masked_argmax(lf, mf, trial) == action))

                offsets[action] = _bisect(share, target)
            if np.max(np.abs(offsets - previous)) < 1e-4:
                break
    lp, mp = logits[~flat], masks[~flat]
    if len(lp):

        def pm_share(value: float) -> float:
            trial = offsets.copy()
            trial[list(PM_IDS)] = value
            chosen = masked_argmax(lp, mp, trial)
            return 100.0 * float(np.mean(np.isin(chosen, PM_IDS)))

        offsets[list(PM_IDS)] = _bisect(pm_share, TARGET_PM_IN_POSITION)
    return offsets


class _RecordingPolicy:
    """The numpy actor behind saved normalisation, with offsets, recording its logits."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, str]], vecnorm: Any) -> None:
        self.layers = layers
        self.vecnorm = vecnorm
        self.offsets = np.zeros(N_ACTIONS)
        self.logits: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []

    def __call__(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        x = actor_logits(self.layers, self.vecnorm.normalize_obs(obs).astype(np.float32))
        self.logits.append(x.astype(np.float64))
        self.masks.append(masks.copy())
        return masked_argmax(x, masks, self.offsets).astype(np.int64)

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        logits, masks = np.concatenate(self.logits), np.concatenate(self.masks)
        self.logits, self.masks = [], []
        return logits, masks


def calibrate(
    model: Any,
    vecnorm: Any,
    train_bars: Bars,
    env_config: EnvConfig,
    episodes: int = DEFAULT_EPISODES,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = DEFAULT_SEED,
) -> Calibration:
    """Solve the offsets on ``train_bars`` and add them to ``model``'s action head.

    Args:
        model: A trained MaskablePPO (changed in place: ``policy.action_net.bias``).
        vecnorm: Its VecNormalize (``normalize_obs`` with the final statistics).
        train_bars: The bars it trained on (never the held-out ones).
        env_config: The training env's configuration.
        episodes: Deterministic episodes per round; ``rounds``: at most this many solves.

    Returns:
        The :class:`Calibration` (``skipped`` set, model unchanged, for a policy that is
        not a standard MLP with a linear action head).
    """
    import torch

    layers = numpy_actor(model.policy)
    if layers is None:
        return Calibration(skipped="not a standard MLP policy with a linear action head")
    recorder = _RecordingPolicy(layers, vecnorm)
    outcome = Calibration(episodes=episodes)
    best: tuple[float, np.ndarray, dict[str, float]] | None = None
    for round_no in range(rounds + 1):
        measured = shares_of(
            run_episodes(recorder, train_bars, env_config, episodes, seed=seed + round_no)
        )
        if round_no == 0:
            outcome.before = measured
        outcome.history.append({"offsets": recorder.offsets.round(5).tolist(), **measured})
        distance = _distance(measured)
        if best is None or distance < best[0]:
            best = (distance, recorder.offsets.copy(), measured)
        if within_bands(measured):
            outcome.converged = True
            break
        if round_no == rounds:
            break
        logits, masks = recorder.take()
        recorder.offsets = solve_offsets(logits, masks, recorder.offsets)
        outcome.rounds = round_no + 1
    assert best is not None
    _, offsets, measured = best
    outcome.offsets, outcome.after = offsets, measured
    with torch.no_grad():
        head = model.policy.action_net
        head.bias.add_(torch.as_tensor(offsets, dtype=head.bias.dtype, device=head.bias.device))
    return outcome


def _distance(shares: dict[str, float]) -> float:
    """How far measured shares are from the band centres (sum of absolute points)."""
    return (
        abs(shares["buy_flat"] - TARGET_BUY_FLAT)
        + abs(shares["sell_flat"] - TARGET_SELL_FLAT)
        + abs(shares["pm_in_position"] - TARGET_PM_IN_POSITION)
    )


__all__ = ["Calibration", "calibrate", "masked_argmax", "shares_of", "solve_offsets"]
