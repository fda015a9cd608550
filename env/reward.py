"""Reward presets. Both add the realised PnL of a trade, in R, on the step it closes.

``seed`` is the retraining guide's ``calculate_reward``, literally. It pays +0.5 for every
MOVE_TO_BE or ENABLE_TRAIL and +0.2 for every DISABLE_TRAIL in a position, whether or not
the action does anything, so repeating them forever is optimal: the very collapse the guide
sets out to fix (SPEC.md, contradiction 4).

``default`` keeps the guide's amounts but pays a position-management bonus only when the
action changes the protection state (the stop really moves to breakeven; trailing really
switches on or off), and each kind of bonus at most once per trade, so neither repeating an
action nor toggling trailing on and off earns anything.
"""

from __future__ import annotations

from typing import Protocol

from env.config import Action

INVALID_ACTION_PENALTY = -10.0


class RewardFn(Protocol):
    def __call__(
        self, action: int, side_before: int, side_after: int, changed: bool, first_in_trade: bool
    ) -> float: ...


def seed_reward(
    action: int, side_before: int, side_after: int, changed: bool, first_in_trade: bool
) -> float:
    """The guide's ``calculate_reward(action, position_before, position_after)``."""
    if side_before == 0 and action in (3, 4, 5):
        return INVALID_ACTION_PENALTY
    if side_before != 0 and action in (1, 2):
        return INVALID_ACTION_PENALTY
    if action == Action.HOLD:
        return 0.01 if side_before == 0 else 0.0
    if action in (Action.BUY, Action.SELL):
        return 0.1 if side_after != 0 else -1.0
    if action == Action.MOVE_TO_BE:
        return 0.5
    if action == Action.ENABLE_TRAIL:
        return 0.5
    if action == Action.DISABLE_TRAIL:
        return 0.2
    return 0.0


def default_reward(
    action: int, side_before: int, side_after: int, changed: bool, first_in_trade: bool
) -> float:
    """The guide's amounts; position management paid only for a first real change."""
    if action in (Action.MOVE_TO_BE, Action.ENABLE_TRAIL, Action.DISABLE_TRAIL):
        if side_before == 0:
            return INVALID_ACTION_PENALTY
        if not (changed and first_in_trade):
            return 0.0
    return seed_reward(action, side_before, side_after, changed, first_in_trade)


REWARD_PRESETS: dict[str, RewardFn] = {"seed": seed_reward, "default": default_reward}
