"""Observation contract and action ids shared by training and serving.

The names and numbers follow the user's ``config.py`` from the retraining guide; the
daemon and the environment both import them from here and nowhere else.
"""

from __future__ import annotations

from enum import IntEnum

WINDOW_SIZE = 20  # number of bars in the rolling window
MARKET_FEATURE_COUNT = 11  # features per bar
TOTAL_MARKET_FEATURES = WINDOW_SIZE * MARKET_FEATURE_COUNT  # 220

POSITION_FEATURE_COUNT = 8  # upgraded from 5 (three explicit validity flags)
TOTAL_OBSERVATION_SIZE = TOTAL_MARKET_FEATURES + POSITION_FEATURE_COUNT  # 228

# Version of the per-bar feature set. A model card records it and the daemon refuses a
# model whose feature version differs from the one this code computes.
FEATURE_VERSION = "scalefree-v2"
# Earlier versions whose models this code still serves, and on which bars (see the
# version history in env/features.py): v1 differs from v2 only on bars of a day or longer
# and on bars whose ATR fell below one tick.
COMPATIBLE_FEATURE_VERSIONS: dict[str, str] = {
    "scalefree-v1": "intraday bars; identical while ATR is at least one tick",
}

# Bars of history after which every indicator behind the features is defined (ATR(14),
# RSI(14), SMA(20) of volume, EMA(20) and its 5-bar slope), plus the 20-bar window.
INDICATOR_WARMUP_BARS = 25
WARMUP_BARS = INDICATOR_WARMUP_BARS + WINDOW_SIZE


class Action(IntEnum):
    """Action ids, fixed by the retraining guide."""

    HOLD = 0
    BUY = 1
    SELL = 2
    MOVE_TO_BE = 3
    ENABLE_TRAIL = 4
    DISABLE_TRAIL = 5


N_ACTIONS = len(Action)
ACTION_NAMES: tuple[str, ...] = tuple(a.name for a in Action)
ENTRY_ACTIONS = frozenset({Action.BUY, Action.SELL})
POSITION_MANAGEMENT_ACTIONS = frozenset(
    {Action.MOVE_TO_BE, Action.ENABLE_TRAIL, Action.DISABLE_TRAIL}
)

# Names of the eight position features, in observation order (indices 220..227).
POSITION_FEATURE_NAMES: tuple[str, ...] = (
    "position_value",
    "entry_price_ratio",
    "sl_distance_atr",
    "tp_distance_atr",
    "time_in_position",
    "can_enter",
    "can_manage",
    "has_position",
)

MARKET_FEATURE_NAMES: tuple[str, ...] = (
    "log_return",
    "range_atr",
    "body_atr",
    "upper_wick_atr",
    "lower_wick_atr",
    "close_ema20_atr",
    "ema20_slope5_atr",
    "rsi14",
    "log_volume_ratio",
    "time_sin",
    "time_cos",
)
