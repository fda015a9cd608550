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

**Recent bars weigh more.** A policy's shares drift with the market regime: on the S&P
500 daily series the BUY share of one model ran from 3.5% to 12.1% across five
chronological blocks of its training years, and the held-out years (which follow the
training span) sat above the pooled centre. The model is used *after* its training
span, so the shares are measured on ``BLOCKS`` chronological blocks of the training bars
(each with its own episodes, which never cross a block's end) and combined with weights
that double from one block to the next (an exponentially weighted share with a
half-life of one block, as an exponentially weighted estimate discounts old
observations): the latest block carries about half the weight, the oldest 1/31. With
equal weights it is the plain mean of the block shares, close to the pooled share of the
earlier version (which one block gives exactly). Chosen on evidence that
reads only training bars: calibrating on the first 80% of the training span and
checking on its last 20%, the recency-weighted shares landed inside the bands in more
runs than the pooled shares or a minimax over blocks (centring the range of the block
shares), which did no better than pooling (``docs/validation.md``, section 2).

The held-out bars are never read, so validation stays an out-of-sample check. Which bars
are flat or in a position depends on the decisions, so the offsets are solved on the
recorded logits, the episodes are run again with them, and this repeats until the
weighted shares are near the centres (:func:`near_centres`; a fixed-point iteration,
``rounds`` at most). Each solve is a monotone one-dimensional bisection per offset (a
higher offset never lowers its action's share in any block, so never lowers a positively
weighted mean of them), alternated between BUY and SELL until both settle.

Adding a constant to a logit changes which action is the argmax only where the two
actions were within that constant of each other: the learned ranking of states is kept,
only the cut-off moves. No static cut-off can follow a regime the training span never
showed; the card records the per-block shares so a reader sees how far they spread.
"""

from __future__ import annotations

import itertools
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
# A round is accepted when every measured share is within this fraction of its band's
# half-width of the centre: BUY and SELL +-1 point, HOLD +-2, PM in position +-4.
ACCEPT_FRACTION = 0.4
# Bands (percent): (low, high) of each share the guide bounds.
BANDS = {
    "hold_flat": (80.0, 90.0),
    "buy_flat": (5.0, 10.0),
    "sell_flat": (5.0, 10.0),
    "pm_in_position": (40.0, 60.0),
}
MAX_OFFSET = 30.0  # logit units; beyond this the action head is being overruled, not calibrated
BISECTION_STEPS = 40
BLOCKS = 5  # chronological blocks of the training bars
BLOCK_WEIGHT_GROWTH = 2.0  # each block weighs this much more than the one before it
MIN_BLOCK_EPISODES = 4  # a block holds at least this many episode lengths of decision bars
DEFAULT_EPISODES = 400  # per round, shared equally between the blocks
DEFAULT_ROUNDS = 5
DEFAULT_SEED = 777  # episode starts on the training bars (validation uses its own seed)
SHARE_KEYS = ("hold_flat", "buy_flat", "sell_flat", "pm_in_position", "invalid_pct")


@dataclass
class Calibration:
    """The outcome of :func:`calibrate`.

    Attributes:
        offsets: Logit offset per action id (shape (6,)); HOLD's is 0.
        before, after: Recency-weighted shares (percent) of the uncalibrated and the
            calibrated policy on the training bars: ``{"hold_flat", "buy_flat",
            "sell_flat", "pm_in_position", "invalid_pct"}``.
        blocks: Per chronological block of the training bars: ``first``/``last`` decision
            bar times, ``weight`` (the weights sum to 1), ``before_pct`` and ``after_pct``
            (that block's own shares, same keys).
        rounds: Rounds run; ``converged``: whether the last one was near every centre
            (:func:`near_centres`).
        skipped: Why nothing was changed (not a standard MLP policy), else None.
    """

    offsets: np.ndarray = field(default_factory=lambda: np.zeros(N_ACTIONS))
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    blocks: list[dict[str, Any]] = field(default_factory=list)
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
            "episodes over the training bars (held-out bars unread); shares of "
            f"{len(self.blocks)} chronological blocks weighted x{BLOCK_WEIGHT_GROWTH:g} "
            "per block towards the most recent",
            "targets_pct": {
                "hold_flat": 100.0 - TARGET_BUY_FLAT - TARGET_SELL_FLAT,
                "buy_flat": TARGET_BUY_FLAT,
                "sell_flat": TARGET_SELL_FLAT,
                "pm_in_position": TARGET_PM_IN_POSITION,
            },
            "offsets": {n: float(v) for n, v in zip(ACTION_NAMES, self.offsets)},
            "before_pct": self.before,
            "after_pct": self.after,
            "blocks": self.blocks,
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


def weighted_shares(block_shares: list[dict[str, float]], weights: np.ndarray) -> dict[str, float]:
    """The weighted mean of per-block shares (:func:`shares_of` of each block's run),
    ``sum_k w_k share_k`` per key; ``weights`` shape ``(n_blocks,)``, summing to 1."""
    w = np.asarray(weights, dtype=np.float64)
    return {
        key: round(float(sum(wk * shares[key] for wk, shares in zip(w, block_shares))), 3)
        for key in SHARE_KEYS
    }


def near_centres(shares: dict[str, float], fraction: float = ACCEPT_FRACTION) -> bool:
    """Whether every share is within ``fraction`` of its band's half-width of the band's
    centre (``BANDS``: HOLD 80-90, BUY and SELL 5-10, PM 40-60). The same relative
    tolerance for every band: a fixed margin inside the band would accept PM anywhere
    in 41.5-58.5 (8.5 points off centre) but BUY only in 6.5-8.5."""
    return all(
        abs(shares[key] - 0.5 * (low + high)) <= fraction * 0.5 * (high - low)
        for key, (low, high) in BANDS.items()
    )


def masked_argmax(logits: np.ndarray, masks: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Argmax of ``logits + offsets`` over the valid actions. Shapes ``(n, 6)`` -> ``(n,)``."""
    return np.where(masks.astype(bool), logits + offsets, -np.inf).argmax(axis=1)


def block_weights(n_blocks: int, growth: float = BLOCK_WEIGHT_GROWTH) -> np.ndarray:
    """Weights of ``n_blocks`` chronological blocks, oldest first: ``growth**k``
    normalised to sum 1 (an exponential weighting with a half-life of one block for
    ``growth`` 2; ``growth`` 1 weighs every block the same). Shape ``(n_blocks,)``."""
    raw = float(growth) ** np.arange(n_blocks, dtype=np.float64)
    return raw / raw.sum()


def training_blocks(
    train_bars: Bars, episode_bars: int, n_blocks: int = BLOCKS
) -> list[tuple[int, int]]:
    """Split the training bars' decision bars into chronological blocks.

    Args:
        train_bars: The training bars; the first ``WARMUP_BARS - 1`` are warm-up only.
        episode_bars: Decisions per episode; each block holds at least
            ``MIN_BLOCK_EPISODES`` times as many decision bars, so a short span gets
            fewer blocks (one block: the pooled calibration).
        n_blocks: The most blocks.

    Returns:
        ``(first, end)`` decision-bar index ranges into ``train_bars`` (end exclusive),
        oldest first, covering every decision bar once.
    """
    from env.config import WARMUP_BARS

    first, end = WARMUP_BARS - 1, len(train_bars)
    span = end - first
    k = max(1, min(n_blocks, span // max(MIN_BLOCK_EPISODES * (episode_bars + 1), 1)))
    edges = np.linspace(first, end, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def _block_bars(train_bars: Bars, first: int, end: int) -> Bars:
    """The bars an episode runner needs for decisions on ``[first, end)``: the block
    and the warm-up bars before it (episodes end inside the block)."""
    from env.config import WARMUP_BARS

    return train_bars[first - (WARMUP_BARS - 1) : end]


def bisect_offset(share_at: Any, target: float) -> float:
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


def solve_offsets(
    logits: np.ndarray,
    masks: np.ndarray,
    start: np.ndarray,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Offsets that put the (weighted) argmax shares of recorded decisions at the band
    centres.

    Args:
        logits: Uncalibrated action logits, shape ``(n, 6)``.
        masks: The masks they were taken under, shape ``(n, 6)``; a row is flat when
            MOVE_TO_BE is masked (``env.mask``).
        start: Offsets to start from (the previous round's), shape ``(6,)``.
        weights: Weight of each decision, shape ``(n,)``, all >= 0 (its block's weight
            over the block's decisions); None counts every decision once.

    Returns:
        Offsets, shape ``(6,)``, HOLD's 0. An offset whose state never occurs (no
        in-position rows) keeps its start value.
    """
    offsets = np.array(start, dtype=np.float64)
    offsets[Action.HOLD] = 0.0
    w = np.ones(len(logits)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(logits),) or (w < 0).any():
        raise ValueError(f"weights must be {len(logits)} values >= 0, got shape {w.shape}")
    flat = masks[:, Action.MOVE_TO_BE] == 0
    lf, mf, wf = logits[flat], masks[flat], w[flat]
    if len(lf) and wf.sum() > 0:
        for _ in range(30):
            previous = offsets.copy()
            for action, target in ((Action.BUY, TARGET_BUY_FLAT), (Action.SELL, TARGET_SELL_FLAT)):

                def share(value: float, action: int = action) -> float:
                    trial = offsets.copy()
                    trial[action] = value
                    hit = masked_argmax(lf, mf, trial) == action
                    return 100.0 * float(wf[hit].sum() / wf.sum())

                offsets[action] = bisect_offset(share, target)
            if np.max(np.abs(offsets - previous)) < 1e-4:
                break
    lp, mp, wp = logits[~flat], masks[~flat], w[~flat]
    if len(lp) and wp.sum() > 0:

        def pm_share(value: float) -> float:
            trial = offsets.copy()
            trial[list(PM_IDS)] = value
            hit = np.isin(masked_argmax(lp, mp, trial), PM_IDS)
            return 100.0 * float(wp[hit].sum() / wp.sum())

        offsets[list(PM_IDS)] = bisect_offset(pm_share, TARGET_PM_IN_POSITION)
    return offsets


class _RecordingPolicy:
    """The numpy actor behind saved normalisation, with offsets, recording its logits.

    It computes in float64: a float32 matrix product's last bits depend on how many
    threads the BLAS library splits it over (a Ray worker runs one, a plain process
    several), and a bisection or a re-run round can turn a last-bit difference into
    other offsets. In float64 the offsets agree wherever the calibration runs."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, str]], vecnorm: Any) -> None:
        self.layers = [(w.astype(np.float64), b.astype(np.float64), a) for w, b, a in layers]
        self.vecnorm = vecnorm
        self.offsets = np.zeros(N_ACTIONS)
        self.logits: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []

    def __call__(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        normalized = self.vecnorm.normalize_obs(obs).astype(np.float32).astype(np.float64)
        x = actor_logits(self.layers, normalized)
        self.logits.append(x)
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
    n_blocks: int = BLOCKS,
    growth: float = BLOCK_WEIGHT_GROWTH,
) -> Calibration:
    """Solve the offsets on ``train_bars`` and add them to ``model``'s action head.

    Args:
        model: A trained MaskablePPO (changed in place: ``policy.action_net.bias``).
        vecnorm: Its VecNormalize (``normalize_obs`` with the final statistics).
        train_bars: The bars it trained on (never the held-out ones).
        env_config: The training env's configuration.
        episodes: Deterministic episodes per round, shared equally between the blocks;
            ``rounds``: at most this many solves.
        n_blocks: Chronological blocks of ``train_bars`` (fewer on a short span, see
            :func:`training_blocks`); ``growth``: weight ratio of a block to the one
            before it (1: the plain mean of the block shares).

    Returns:
        The :class:`Calibration` (``skipped`` set, model unchanged, for a policy that is
        not a standard MLP with a linear action head).
    """
    import torch

    layers = numpy_actor(model.policy)
    if layers is None:
        return Calibration(skipped="not a standard MLP policy with a linear action head")
    spans = training_blocks(train_bars, env_config.episode_bars, n_blocks)
    weights = block_weights(len(spans), growth)
    per_block = max(1, -(-episodes // len(spans)))
    block_bars = [_block_bars(train_bars, a, b) for a, b in spans]
    recorder = _RecordingPolicy(layers, vecnorm)
    outcome = Calibration(episodes=per_block * len(spans))
    best: tuple[float, np.ndarray, dict[str, float], list[dict[str, float]]] | None = None
    first_blocks: list[dict[str, float]] = []
    for round_no in range(rounds + 1):
        block_shares, logits, masks, row_weights = [], [], [], []
        for k, bars in enumerate(block_bars):
            block_seed = seed + round_no + 1000 * k
            result = run_episodes(recorder, bars, env_config, per_block, seed=block_seed)
            block_shares.append(shares_of(result))
            block_logits, block_masks = recorder.take()
            logits.append(block_logits)
            masks.append(block_masks)
            row_weights.append(_row_weights(block_masks, weights[k]))
        measured = weighted_shares(block_shares, weights)
        if round_no == 0:
            outcome.before, first_blocks = measured, block_shares
        outcome.history.append({"offsets": recorder.offsets.round(5).tolist(), **measured})
        distance = _distance(measured)
        if best is None or distance < best[0]:
            best = (distance, recorder.offsets.copy(), measured, block_shares)
        if near_centres(measured):
            outcome.converged = True
            break
        if round_no == rounds:
            break
        recorder.offsets = solve_offsets(
            np.concatenate(logits),
            np.concatenate(masks),
            recorder.offsets,
            np.concatenate(row_weights),
        )
        outcome.rounds = round_no + 1
    assert best is not None
    _, offsets, measured, after_blocks = best
    outcome.offsets, outcome.after = offsets, measured
    outcome.blocks = [
        {
            "first": str(train_bars.time[a]),
            "last": str(train_bars.time[b - 1]),
            "weight": round(float(w), 5),
            "before_pct": before,
            "after_pct": after,
        }
        for (a, b), w, before, after in zip(spans, weights, first_blocks, after_blocks)
    ]
    with torch.no_grad():
        head = model.policy.action_net
        head.bias.add_(torch.as_tensor(offsets, dtype=head.bias.dtype, device=head.bias.device))
    return outcome


def _row_weights(masks: np.ndarray, weight: float) -> np.ndarray:
    """Per-decision weights of one block for :func:`solve_offsets`: the block's weight
    shared between its flat decisions, and again between its in-position ones, so the
    solver's shares are :func:`weighted_shares` of the block shares. Shape ``(n,)``."""
    flat = masks[:, Action.MOVE_TO_BE] == 0
    out = np.zeros(len(masks))
    for rows in (flat, ~flat):
        if rows.any():
            out[rows] = weight / int(rows.sum())
    return out


def _distance(shares: dict[str, float]) -> float:
    """How far measured shares are from the band centres (sum of absolute points)."""
    return (
        abs(shares["buy_flat"] - TARGET_BUY_FLAT)
        + abs(shares["sell_flat"] - TARGET_SELL_FLAT)
        + abs(shares["pm_in_position"] - TARGET_PM_IN_POSITION)
    )


__all__ = [
    "Calibration",
    "block_weights",
    "calibrate",
    "masked_argmax",
    "shares_of",
    "solve_offsets",
    "training_blocks",
    "weighted_shares",
]
