"""The action mask: one pure function used by the environment and by the daemon."""

from __future__ import annotations

import numpy as np

# The retraining guide's Test 1, verbatim: PM actions are invalid when flat; every action
# is valid in a position (an entry while in a position is penalised, not masked).
FLAT_MASK = np.array([1, 1, 1, 0, 0, 0], dtype=np.int8)
IN_POSITION_MASK = np.array([1, 1, 1, 1, 1, 1], dtype=np.int8)
# Flat, and no entry allowed (too close to the session's close): only HOLD.
FLAT_NO_ENTRY_MASK = np.array([1, 0, 0, 0, 0, 0], dtype=np.int8)
FLAT_MASK.flags.writeable = False
IN_POSITION_MASK.flags.writeable = False
FLAT_NO_ENTRY_MASK.flags.writeable = False

# NinjaTrader's "Exit on session close" would flatten a position entered this close to
# the session's close within minutes; the env and the daemon's risk rail share it.
NO_ENTRY_MINUTES_BEFORE_CLOSE = 15.0


def entry_blocked_by_close(minutes_to_close: float | None, no_entry_minutes: float) -> bool:
    """Whether an entry is refused ``minutes_to_close`` minutes before the session's close
    (None or inf: closed or unknown, not refused; ``no_entry_minutes`` 0: never)."""
    return (
        no_entry_minutes > 0
        and minutes_to_close is not None
        and minutes_to_close < no_entry_minutes
    )


def action_mask(side: int, entries_allowed: bool = True) -> np.ndarray:
    """Return the mask of valid actions for a position side.

    Args:
        side: -1 short, 0 flat, 1 long.
        entries_allowed: False near a session's close (:func:`entry_blocked_by_close`):
            flat, only HOLD is valid.

    Returns:
        A new int8 array of six values, 1 = valid.
    """
    if side == 0:
        return (FLAT_MASK if entries_allowed else FLAT_NO_ENTRY_MASK).copy()
    return IN_POSITION_MASK.copy()


def is_valid(side: int, action: int) -> bool:
    """Whether ``action`` is allowed by the mask for ``side``."""
    return bool((FLAT_MASK if side == 0 else IN_POSITION_MASK)[action])
