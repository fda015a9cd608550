"""The action mask: one pure function used by the environment and by the daemon."""

from __future__ import annotations

import numpy as np

# The retraining guide's Test 1, verbatim: PM actions are invalid when flat; every action
# is valid in a position (an entry while in a position is penalised, not masked).
FLAT_MASK = np.array([1, 1, 1, 0, 0, 0], dtype=np.int8)
IN_POSITION_MASK = np.array([1, 1, 1, 1, 1, 1], dtype=np.int8)
FLAT_MASK.flags.writeable = False
IN_POSITION_MASK.flags.writeable = False


def action_mask(side: int) -> np.ndarray:
    """Return the mask of valid actions for a position side.

    Args:
        side: -1 short, 0 flat, 1 long.

    Returns:
        A new int8 array of six values, 1 = valid.
    """
    return (FLAT_MASK if side == 0 else IN_POSITION_MASK).copy()


def is_valid(side: int, action: int) -> bool:
    """Whether ``action`` is allowed by the mask for ``side``."""
    return bool((FLAT_MASK if side == 0 else IN_POSITION_MASK)[action])
