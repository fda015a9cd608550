"""What NinjaTrader must do for an action, priced by the environment's own functions."""

from __future__ import annotations

from typing import Any

from bridge.protocol import Position
from env.config import Action
from env.execution import bracket_prices, breakeven_stop, trail_distance
from env.trading_env import EnvConfig


def price_orders(
    action: int, position: Position, close: float, atr: float, config: EnvConfig
) -> dict[str, Any]:
    """The ``orders`` object of an action reply.

    Args:
        action: The action sent (never an entry while in a position: the caller guards).
        position: The position at the decision bar's close.
        close: Close of the decision bar.
        atr: ATR (floored) of the decision bar, as the features compute it.
        config: The model's instrument and execution settings.

    Returns:
        BUY/SELL: ``{"entry": "market", "stop_price", "target_price"}`` (tick-rounded);
        MOVE_TO_BE: ``{"stop_price"}`` (unchanged when breakeven would not tighten it);
        ENABLE_TRAIL: ``{"trail_points"}``; DISABLE_TRAIL: ``{"stop_price"}`` (the stop
        stays where the trail had it); HOLD: ``{}``.
    """
    if action == Action.BUY or action == Action.SELL:
        side = 1 if action == Action.BUY else -1
        stop, target = bracket_prices(side, close, atr, config.instrument, config.execution)
        return {"entry": "market", "stop_price": stop, "target_price": target}
    if action == Action.MOVE_TO_BE:
        stop = breakeven_stop(
            position.side,
            position.entry_price,  # type: ignore[arg-type]
            position.sl_price,  # type: ignore[arg-type]
            close,
            config.instrument.tick_size,
        )
        return {"stop_price": stop}
    if action == Action.ENABLE_TRAIL:
        return {"trail_points": trail_distance(atr, config.instrument, config.execution)}
    if action == Action.DISABLE_TRAIL:
        return {"stop_price": position.sl_price}
    return {}
