"""Order pricing and the simulated position: the execution model of SPEC.md.

Decision at a bar's close; a market entry fills at the next bar's open plus slippage;
the bracket stop and target are priced from the decision bar's close and ATR and
tick-rounded away from the market; stops and targets are checked against later bars'
high and low, and when one bar touches both, the stop wins. A stop gapped through fills
at the open (less slippage); a target gapped through fills at the open (a limit order
fills at its price or better). Stops only ever move in the position's favour.

The pricing functions are what the daemon calls to fill the ``orders`` of a reply, and
:class:`SimulatedPosition` is what both the environment and the replay client execute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from env.config import Action
from env.contracts import tick_decimals
from env.instruments import Instrument


@dataclass(frozen=True)
class ExecutionConfig:
    """Bracket and trailing distances in ATR multiples, and slippage in ticks.

    The trail (2 ATR) is wider than the initial stop (1 ATR), so ENABLE_TRAIL only
    ratchets the stop once a trade is more than 1 ATR in profit: it protects a winner
    instead of cutting it. With a 1-ATR trail, trailing from the first bar lost money on
    every policy measured (docs/reward_comparison.md, sections 4-5).
    """

    stop_atr: float = 1.0
    target_atr: float = 2.0
    trail_atr: float = 2.0
    slippage_ticks: int = 1

    def __post_init__(self) -> None:
        for name in ("stop_atr", "target_atr", "trail_atr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.slippage_ticks < 0:
            raise ValueError(f"slippage_ticks must be >= 0, got {self.slippage_ticks!r}")


def _ticks(price: float, tick: float) -> float:
    """``price`` in ticks, snapped to the nearest whole count when within float error.

    The tolerance is relative (1e-9 of a tick, more for huge counts): ``1.0817 / 0.00005``
    is 21633.999999999996 in floats, which is the whole count 21634.
    """
    count = price / tick
    nearest = round(count)
    if abs(count - nearest) <= max(1e-9, abs(count) * 1e-12):
        return float(nearest)
    return count


def price_of_ticks(count: int, tick: float) -> float:
    """The price of a whole number of ticks, written as the exchange writes it: the float
    nearest to ``count x tick`` in the tick's decimals (``21634 x 0.00005`` is 1.0817,
    not 1.0817000000000001), so NinjaTrader sees a price exactly on its tick grid."""
    return round(count * tick, tick_decimals(tick))


def floor_to_tick(price: float, tick: float) -> float:
    """Largest tick multiple at or below ``price`` (an integer tick count, see
    :func:`price_of_ticks`)."""
    return price_of_ticks(math.floor(_ticks(price, tick)), tick)


def ceil_to_tick(price: float, tick: float) -> float:
    """Smallest tick multiple at or above ``price``."""
    return price_of_ticks(math.ceil(_ticks(price, tick)), tick)


def round_to_tick(price: float, tick: float) -> float:
    """Nearest tick multiple."""
    return price_of_ticks(round(_ticks(price, tick)), tick)


def on_tick_grid(price: float, tick: float) -> bool:
    """Whether ``price`` is a whole number of ticks (within float error)."""
    return float(_ticks(price, tick)).is_integer()


def bracket_prices(
    side: int, close: float, atr: float, instrument: Instrument, config: ExecutionConfig
) -> tuple[float, float]:
    """Stop and target for an entry decided at ``close``, at least one tick away.

    Returns:
        ``(stop_price, target_price)``, tick-rounded away from ``close``.
    """
    tick = instrument.tick_size
    stop_distance = max(config.stop_atr * atr, tick)
    target_distance = max(config.target_atr * atr, tick)
    if side > 0:
        return floor_to_tick(close - stop_distance, tick), ceil_to_tick(
            close + target_distance, tick
        )
    return ceil_to_tick(close + stop_distance, tick), floor_to_tick(close - target_distance, tick)


def trail_distance(atr: float, instrument: Instrument, config: ExecutionConfig) -> float:
    """Trailing distance in points for ENABLE_TRAIL: ``trail_atr x ATR``, whole ticks, >= 1 tick."""
    tick = instrument.tick_size
    return max(round_to_tick(config.trail_atr * atr, tick), tick)


def protective_limit(side: int, close: float, tick: float) -> float:
    """The tightest a stop may be placed: one tick beyond the last close."""
    return floor_to_tick(close - tick, tick) if side > 0 else ceil_to_tick(close + tick, tick)


def tighten(side: int, stop_price: float, candidate: float) -> float:
    """The tighter of two stops for ``side`` (a stop never moves against the position)."""
    return max(stop_price, candidate) if side > 0 else min(stop_price, candidate)


def breakeven_stop(
    side: int, entry_price: float, stop_price: float, close: float, tick: float
) -> float:
    """Stop after MOVE_TO_BE: the entry price (tick-rounded against the position's
    favour), provided that tightens the stop and sits beyond the last close; else the
    stop is unchanged (a stop at or through the market would be rejected by the broker).
    """
    if side > 0:
        candidate = floor_to_tick(entry_price, tick)
        return candidate if stop_price < candidate < close else stop_price
    candidate = ceil_to_tick(entry_price, tick)
    return candidate if close < candidate < stop_price else stop_price


def trailed_stop(
    side: int, stop_price: float, best_price: float, distance: float, close: float, tick: float
) -> float:
    """Stop after a bar with trailing on: ``distance`` behind the best price since
    trailing was enabled, never looser than before, never beyond the last close."""
    if side > 0:
        candidate = min(
            floor_to_tick(best_price - distance, tick), protective_limit(side, close, tick)
        )
    else:
        candidate = max(
            ceil_to_tick(best_price + distance, tick), protective_limit(side, close, tick)
        )
    return tighten(side, stop_price, candidate)


@dataclass(frozen=True)
class Trade:
    """A closed round trip of one contract."""

    side: int
    entry_bar: int
    entry_price: float
    exit_bar: int
    exit_price: float
    exit_reason: str  # "stop", "target", "flatten" or "session_close"
    entry_atr: float
    pnl_points: float
    commission: float
    pnl_dollars: float  # net of commission
    r_multiple: float  # pnl_dollars in units of the entry ATR's dollar value


class SimulatedPosition:
    """One contract's position under the execution model; the env and the replay client
    drive it the same way: :meth:`apply` at a bar's close, :meth:`on_bar` for the next bar.
    """

    __slots__ = (
        "best_price",
        "config",
        "entry_atr",
        "entry_bar",
        "entry_price",
        "instrument",
        "pending_atr",
        "pending_side",
        "pending_stop",
        "pending_target",
        "side",
        "slippage",
        "stop_price",
        "target_price",
        "trail_points",
        "trailing",
    )

    def __init__(self, instrument: Instrument, config: ExecutionConfig) -> None:
        self.instrument = instrument
        self.config = config
        self.slippage = config.slippage_ticks * instrument.tick_size
        self.reset()

    def reset(self) -> None:
        """Flat, nothing pending."""
        self.side = 0
        self.entry_price = 0.0
        self.entry_bar = 0
        self.entry_atr = 0.0
        self.stop_price = 0.0
        self.target_price = 0.0
        self.trailing = False
        self.trail_points = 0.0
        self.best_price = 0.0
        self.pending_side = 0
        self.pending_stop = 0.0
        self.pending_target = 0.0
        self.pending_atr = 0.0

    def apply(self, action: int, close: float, atr: float) -> bool:
        """Act at a bar's close, pricing orders as the daemon does. Entries while in a
        position are not executed.

        Returns:
            Whether the action changed the order state (an entry was queued, the stop
            moved to breakeven, or trailing was switched on or off).
        """
        if action == Action.BUY or action == Action.SELL:
            side = 1 if action == Action.BUY else -1
            stop, target = bracket_prices(side, close, atr, self.instrument, self.config)
            return self.queue_entry(side, stop, target, atr)
        if self.side == 0:
            return False
        if action == Action.MOVE_TO_BE:
            tick = self.instrument.tick_size
            return self.move_stop(
                breakeven_stop(self.side, self.entry_price, self.stop_price, close, tick)
            )
        if action == Action.ENABLE_TRAIL:
            return self.enable_trailing(trail_distance(atr, self.instrument, self.config), close)
        if action == Action.DISABLE_TRAIL:
            return self.disable_trailing()
        return False

    # The order primitives below take explicit prices, so a client that receives prices
    # (the replay client, executing a daemon's ``orders``) drives the same model.

    def queue_entry(self, side: int, stop_price: float, target_price: float, atr: float) -> bool:
        """Queue a market entry for the next bar's open with its bracket; refused (False)
        while a position or another entry is open."""
        if self.side != 0 or self.pending_side != 0:
            return False
        self.pending_side = side
        self.pending_stop = stop_price
        self.pending_target = target_price
        self.pending_atr = atr
        return True

    def move_stop(self, stop_price: float) -> bool:
        """Move the stop, only ever in the position's favour; True if it moved."""
        if self.side == 0:
            return False
        new_stop = tighten(self.side, self.stop_price, stop_price)
        changed = new_stop != self.stop_price
        self.stop_price = new_stop
        return changed

    def enable_trailing(self, trail_points: float, close: float) -> bool:
        """Start trailing ``trail_points`` behind the best price from ``close`` on."""
        if self.side == 0 or self.trailing:
            return False
        self.trailing = True
        self.trail_points = trail_points
        self.best_price = close
        return True

    def disable_trailing(self) -> bool:
        """Stop trailing; the stop stays where it is."""
        changed = self.trailing
        self.trailing = False
        return changed

    def on_bar(self, bar: int, open_: float, high: float, low: float, close: float) -> Trade | None:
        """Run one bar: fill a pending entry at the open, then check the stop (first)
        and the target against the bar's range, then trail the stop at the close."""
        if self.pending_side != 0:
            self._fill_entry(bar, open_)
        if self.side == 0:
            return None
        side = self.side
        if (side > 0 and low <= self.stop_price) or (side < 0 and high >= self.stop_price):
            gapped = open_ < self.stop_price if side > 0 else open_ > self.stop_price
            price = open_ if gapped else self.stop_price
            return self._close(bar, price - side * self.slippage, "stop")
        if (side > 0 and high >= self.target_price) or (side < 0 and low <= self.target_price):
            gapped = open_ > self.target_price if side > 0 else open_ < self.target_price
            return self._close(bar, open_ if gapped else self.target_price, "target")
        if self.trailing:
            self.best_price = max(self.best_price, high) if side > 0 else min(self.best_price, low)
            self.stop_price = trailed_stop(
                side,
                self.stop_price,
                self.best_price,
                self.trail_points,
                close,
                self.instrument.tick_size,
            )
        return None

    def flatten(self, bar: int, close: float, reason: str = "flatten") -> Trade | None:
        """Close at market at a bar's close (``"flatten"``: episode end;
        ``"session_close"``: NinjaTrader's Exit on session close)."""
        self.pending_side = 0
        if self.side == 0:
            return None
        return self._close(bar, close - self.side * self.slippage, reason)

    def _fill_entry(self, bar: int, open_: float) -> None:
        self.side = self.pending_side
        self.entry_price = open_ + self.side * self.slippage
        self.entry_bar = bar
        self.entry_atr = self.pending_atr
        self.stop_price = self.pending_stop
        self.target_price = self.pending_target
        self.trailing = False
        self.trail_points = 0.0
        self.pending_side = 0

    def _close(self, bar: int, exit_price: float, reason: str) -> Trade:
        instrument = self.instrument
        pnl_points = (exit_price - self.entry_price) * self.side
        commission = 2.0 * instrument.commission_per_side
        pnl_dollars = pnl_points * instrument.point_value - commission
        trade = Trade(
            side=self.side,
            entry_bar=self.entry_bar,
            entry_price=self.entry_price,
            exit_bar=bar,
            exit_price=exit_price,
            exit_reason=reason,
            entry_atr=self.entry_atr,
            pnl_points=pnl_points,
            commission=commission,
            pnl_dollars=pnl_dollars,
            r_multiple=pnl_dollars / (self.entry_atr * instrument.point_value),
        )
        self.side = 0
        self.trailing = False
        return trade
