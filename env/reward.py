"""Reward presets. Both add the realised PnL of a trade, in R, on the step it closes.

``seed`` is the retraining guide's ``calculate_reward``, literally. It pays +0.5 for every
MOVE_TO_BE or ENABLE_TRAIL and +0.2 for every DISABLE_TRAIL in a position, whether or not
the action does anything, so repeating them forever is optimal: the very collapse the guide
sets out to fix (SPEC.md, contradiction 4). Measured: it also makes every entry worth more
than a round trip costs, so a policy trained on it trades on most flat bars.

``default`` keeps the guide's structure (-10 for invalid actions, +0.01 patience for HOLD,
bonuses for position management) and fixes its economics, so that a trade without an edge
loses reward and the trade's net PnL in R decides when to trade:

- HOLD keeps the guide's amounts: +0.01 patience when flat, 0 in a position, so every bar
  spent in a trade forgoes the patience bonus (~0.05 R over a typical trade): a trade
  must earn its costs and its time.
- No entry bonus. The guide's +0.1 "small immediate reward" stands in for the trade's
  outcome, which the env pays at the exit; on top of it, it cancels the round-trip cost
  (NQ: $5 commission + 2 ticks slippage = $15, ~0.09 R at an ATR of ~9 points) and
  teaches that trading is free.
- Management pays only when it *adds protection for the first time in a trade*: the stop
  really moves to breakeven (MOVE_TO_BE) or trailing really switches on (ENABLE_TRAIL),
  each +0.045, so that the two bonuses a trade can earn (0.09 R) never exceed its
  round-trip cost (~0.09 R): a trade opened only to collect them loses. DISABLE_TRAIL
  that really switches trailing off removes the protection ENABLE_TRAIL was paid for and
  gives that bonus back (-0.045): the bonus is for protection held, as potential-based
  shaping would pay it, so switching trailing on and off nets nothing (the guide paid
  +0.2 for undoing its own +0.5; at 0 the policies still enabled and disabled trailing in
  most trades).
- Any management action that changes nothing, or repeats a change already paid in this
  trade, costs -0.05: an order modification sent for nothing is fidgeting, and without a
  cost the argmax between such no-ops and HOLD is arbitrary (the guide's table made
  policies send PM actions on 95% of in-position bars).

Why this bound (measured, docs/reward_comparison.md): with +0.15 per protection, policies
learned to churn, entering, moving the stop to breakeven at the first profitable close
and getting stopped out at the entry: ~90 trades per held-out episode losing ~13 R of PnL
against up to ~27 R of bonus (90 x 0.3). With the guide's amounts, scripted random entries
on every flat bar scored +56 per episode against +3.9 for staying flat.

Bound: every step's reward (shaping plus a closing trade's R) is clipped to
``[-MAX_STEP_REWARD, MAX_STEP_REWARD]`` = [-20, 20]. A trade's R is its P&L over the
entry ATR's dollar value; with the ATR floored at one tick a trade stopped out through a
price gap can still be hundreds of R (a 130-point NQ gap after a limit lock is 520 R at a
0.25 ATR), and one such step would dominate every gradient of a whole training run. The
bound is twice the invalid-action penalty and ten times the 2-ATR bracket target, so it
binds only on such gaps; ``info["trade"]`` keeps the trade's unclipped figures.

Status: at the budgets measured (2-3M steps) no policy trained on either preset meets
every validation criterion; the default is far closer (docs/reward_comparison.md).
"""

from __future__ import annotations

from typing import Protocol

from env.config import Action

INVALID_ACTION_PENALTY = -10.0
HOLD_FLAT_REWARD = 0.01  # the guide's patience reward for HOLD when flat
PROTECTION_BONUS = 0.045  # default preset: MOVE_TO_BE / ENABLE_TRAIL, first real change
SEED_MANAGEMENT_REWARD = {
    Action.MOVE_TO_BE: 0.5,
    Action.ENABLE_TRAIL: 0.5,
    Action.DISABLE_TRAIL: 0.2,
}
NO_OP_MANAGEMENT_COST = -0.05
MAX_STEP_REWARD = 20.0  # bound on any single step's reward (module docstring)


def clip_step_reward(reward: float) -> float:
    """``reward`` within ``[-MAX_STEP_REWARD, MAX_STEP_REWARD]``."""
    return min(MAX_STEP_REWARD, max(-MAX_STEP_REWARD, reward))


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
    """Shaping that leaves the trading decision to net PnL (see the module docstring)."""
    if action == Action.HOLD:
        return HOLD_FLAT_REWARD if side_before == 0 else 0.0
    if action in (Action.BUY, Action.SELL):
        return 0.0 if side_before == 0 else INVALID_ACTION_PENALTY
    if side_before == 0:
        return INVALID_ACTION_PENALTY
    if action == Action.DISABLE_TRAIL and changed:
        return -PROTECTION_BONUS  # gives back the ENABLE_TRAIL bonus: protection removed
    if changed and first_in_trade:
        return PROTECTION_BONUS
    return NO_OP_MANAGEMENT_COST


# ``constrained`` is ``default`` plus the shaping terms below, set from outside the env
# while training (``train.shaping``: Lagrange multipliers of the guide's action-share
# bands, adjusted by dual ascent). With all terms 0 it is exactly ``default``.
REWARD_PRESETS: dict[str, RewardFn] = {
    "seed": seed_reward,
    "default": default_reward,
    "constrained": default_reward,
}

SHAPING_TERMS = ("hold_bonus", "buy_cost", "sell_cost", "management_cost")


def shaping_reward(terms: dict[str, float], action: int, side_before: int) -> float:
    """Extra reward of the settable shaping terms for a valid ``action``: ``hold_bonus``
    for HOLD when flat, minus ``buy_cost`` / ``sell_cost`` for an entry, minus
    ``management_cost`` for a position-management action in a position (each may be
    negative)."""
    if side_before == 0:
        if action == Action.HOLD:
            return terms.get("hold_bonus", 0.0)
        if action == Action.BUY:
            return -terms.get("buy_cost", 0.0)
        if action == Action.SELL:
            return -terms.get("sell_cost", 0.0)
        return 0.0
    if action >= Action.MOVE_TO_BE:
        return -terms.get("management_cost", 0.0)
    return 0.0
