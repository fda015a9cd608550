"""Futures instrument specifications."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Instrument:
    """Contract terms the execution model needs.

    Attributes:
        symbol: Root symbol, e.g. ``"NQ"``.
        tick_size: Minimum price increment in points.
        point_value: Dollars per point per contract.
        commission_per_side: Dollars per contract per fill.
    """

    symbol: str
    tick_size: float
    point_value: float
    commission_per_side: float

    def __post_init__(self) -> None:
        for name in ("tick_size", "point_value"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (math.isfinite(self.commission_per_side) and self.commission_per_side >= 0):
            value = self.commission_per_side
            raise ValueError(f"commission_per_side must be a finite number >= 0, got {value!r}")

    @property
    def tick_value(self) -> float:
        """Dollars per tick per contract."""
        return self.tick_size * self.point_value


INSTRUMENTS: dict[str, Instrument] = {
    "NQ": Instrument("NQ", tick_size=0.25, point_value=20.0, commission_per_side=2.50),
    "MNQ": Instrument("MNQ", tick_size=0.25, point_value=2.0, commission_per_side=0.62),
    "ES": Instrument("ES", tick_size=0.25, point_value=50.0, commission_per_side=2.50),
    "MES": Instrument("MES", tick_size=0.25, point_value=5.0, commission_per_side=0.62),
}
DEFAULT_INSTRUMENT = INSTRUMENTS["NQ"]


def get_instrument(symbol: str) -> Instrument:
    """Look up an instrument by root symbol, or by a NinjaTrader name like ``"NQ 12-25"``.

    Raises:
        KeyError: naming the symbol and the known ones.
    """
    root = symbol.strip().split(" ")[0].upper()
    try:
        return INSTRUMENTS[root]
    except KeyError:
        known = ", ".join(sorted(INSTRUMENTS))
        raise KeyError(f"unknown instrument {symbol!r}; expected one of {known}") from None
