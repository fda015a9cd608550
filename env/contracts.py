"""Futures contract specifications: one table, one resolver, for training and serving.

Tick sizes and point values are CME Group's contract specifications (cmegroup.com, each
product's "Contract Specs" page), in the units NinjaTrader 8 quotes them (Instruments
window, MasterInstrument ``TickSize`` and ``PointValue``): grains in cents per bushel,
Treasury futures in points of par with the 1/32 fractions as decimals (ZN tick 1/64 =
0.015625), FX futures in US dollars per unit of the foreign currency.

Every contract here trades on CME Globex, whose hours are stated in Central time, so the
exchange zone is ``America/Chicago`` throughout; the session calendar is the
pandas-market-calendars calendar of the contract's product group (holidays, early closes,
the daily 16:00-17:00 CT halt).

Commissions are a round estimate of an all-in retail rate per contract per side (broker,
exchange and NFA fees): set your own with ``overrides={"commission_per_side": ...}`` or
the ``--commission`` option.

A contract that is not in the table is supplied by the user as a spec: ``resolve_contract(
"XYZ", overrides={"tick_size": 0.01, "point_value": 1000})`` or, from a config file, a
``[contract]`` section with the same keys (see ``docs/contracts.md``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from env.timezones import canonical_zone

CME_ZONE = "America/Chicago"

# pandas-market-calendars names of the CME Globex product-group calendars.
CAL_EQUITY = "CME Globex Equity"
CAL_ENERGY = "CMEGlobex_Energy"
CAL_METALS = "CMEGlobex_Metals"
CAL_RATES = "CME Globex Fixed Income"
CAL_FX = "CMEGlobex_FX"
CAL_GRAINS = "CMEGlobex_Grains"

FULL_SIZE_COMMISSION = 2.50
MICRO_COMMISSION = 0.62


class UnknownContractError(ValueError):
    """A contract that is neither in the table nor fully specified by the user."""


@dataclass(frozen=True)
class ContractSpec:
    """The terms of one futures contract that pricing, P&L and sessions depend on.

    Attributes:
        symbol: Root symbol, e.g. ``"6E"`` (NinjaTrader's master instrument name).
        tick_size: Minimum price increment, in price units (points).
        point_value: Account currency per point per contract; one tick is worth
            ``tick_size * point_value``.
        commission_per_side: Account currency per contract per fill.
        currency: ISO code of the currency P&L is counted in.
        timezone: IANA zone of the exchange's wall clock (session times, naive bar times).
        calendar: pandas-market-calendars name of the session calendar.
        description: Human-readable name.

    Raises:
        ValueError: on a tick size or point value that is not a finite number > 0, a
            negative commission, or an unknown time zone.
    """

    symbol: str
    tick_size: float
    point_value: float
    commission_per_side: float = FULL_SIZE_COMMISSION
    currency: str = "USD"
    timezone: str = CME_ZONE
    calendar: str = CAL_EQUITY
    description: str = ""

    def __post_init__(self) -> None:
        for name in ("tick_size", "point_value"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        fee = self.commission_per_side
        if isinstance(fee, bool) or not isinstance(fee, (int, float)):
            raise ValueError(f"commission_per_side must be a number, got {fee!r}")
        if not (math.isfinite(fee) and fee >= 0):
            raise ValueError(f"commission_per_side must be a finite number >= 0, got {fee!r}")
        object.__setattr__(self, "commission_per_side", float(fee))
        object.__setattr__(self, "timezone", canonical_zone(self.timezone))

    @property
    def tick_value(self) -> float:
        """Account currency per tick per contract."""
        return self.tick_size * self.point_value

    @property
    def tick_decimals(self) -> int:
        """Decimal places of the tick size (0.00005 -> 5, 0.015625 -> 6, 0.25 -> 2)."""
        return tick_decimals(self.tick_size)

    def round_to_tick(self, price: float) -> float:
        """Nearest price on this contract's tick grid (see ``env.execution`` for orders)."""
        from env.execution import round_to_tick

        return round_to_tick(price, self.tick_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, as stored in a model card."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContractSpec:
        """Inverse of :meth:`to_dict`; a card with only the four v1 keys (symbol, tick
        size, point value, commission) gets the table's or the defaults' other fields.

        Raises:
            ValueError: naming unknown keys.
        """
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown contract keys {sorted(unknown)}")
        symbol = str(data.get("symbol", ""))
        base = CONTRACTS.get(contract_root(symbol)) if symbol else None
        if base is not None:
            return dataclasses.replace(base, **data)
        return cls(**data)


@functools.lru_cache(maxsize=256)
def tick_decimals(tick_size: float) -> int:
    """Decimal places needed to write ``tick_size`` exactly as its shortest repr."""
    exponent = Decimal(repr(float(tick_size))).normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _spec(
    symbol: str,
    tick: float,
    point_value: float,
    calendar: str,
    description: str,
    commission: float = FULL_SIZE_COMMISSION,
) -> ContractSpec:
    return ContractSpec(
        symbol=symbol,
        tick_size=tick,
        point_value=point_value,
        commission_per_side=commission,
        calendar=calendar,
        description=description,
    )


_MICRO = MICRO_COMMISSION
CONTRACTS: dict[str, ContractSpec] = {
    s.symbol: s
    for s in (
        # Equity index (CME, CBOT): points of the index.
        _spec("ES", 0.25, 50.0, CAL_EQUITY, "E-mini S&P 500"),
        _spec("MES", 0.25, 5.0, CAL_EQUITY, "Micro E-mini S&P 500", _MICRO),
        _spec("NQ", 0.25, 20.0, CAL_EQUITY, "E-mini Nasdaq-100"),
        _spec("MNQ", 0.25, 2.0, CAL_EQUITY, "Micro E-mini Nasdaq-100", _MICRO),
        _spec("YM", 1.0, 5.0, CAL_EQUITY, "E-mini Dow ($5)"),
        _spec("MYM", 1.0, 0.5, CAL_EQUITY, "Micro E-mini Dow", _MICRO),
        _spec("RTY", 0.1, 50.0, CAL_EQUITY, "E-mini Russell 2000"),
        _spec("M2K", 0.1, 5.0, CAL_EQUITY, "Micro E-mini Russell 2000", _MICRO),
        # Energy (NYMEX): dollars per barrel / per MMBtu / per gallon.
        _spec("CL", 0.01, 1000.0, CAL_ENERGY, "Crude Oil (WTI), 1,000 barrels"),
        _spec("MCL", 0.01, 100.0, CAL_ENERGY, "Micro WTI Crude Oil, 100 barrels", _MICRO),
        _spec("NG", 0.001, 10000.0, CAL_ENERGY, "Henry Hub Natural Gas, 10,000 MMBtu"),
        _spec("RB", 0.0001, 42000.0, CAL_ENERGY, "RBOB Gasoline, 42,000 gallons"),
        _spec("HO", 0.0001, 42000.0, CAL_ENERGY, "NY Harbor ULSD, 42,000 gallons"),
        # Metals (COMEX): dollars per troy ounce / per pound.
        _spec("GC", 0.1, 100.0, CAL_METALS, "Gold, 100 troy ounces"),
        _spec("MGC", 0.1, 10.0, CAL_METALS, "Micro Gold, 10 troy ounces", _MICRO),
        _spec("SI", 0.005, 5000.0, CAL_METALS, "Silver, 5,000 troy ounces"),
        _spec("SIL", 0.005, 1000.0, CAL_METALS, "Micro Silver, 1,000 troy ounces", _MICRO),
        _spec("HG", 0.0005, 25000.0, CAL_METALS, "Copper, 25,000 pounds"),
        # Interest rates (CBOT): points of par; ticks are fractions of 1/32.
        _spec("ZN", 0.015625, 1000.0, CAL_RATES, "10-Year T-Note (1/2 of 1/32)"),
        _spec("ZB", 0.03125, 1000.0, CAL_RATES, "U.S. Treasury Bond (1/32)"),
        _spec("ZF", 0.0078125, 1000.0, CAL_RATES, "5-Year T-Note (1/4 of 1/32)"),
        _spec("ZT", 0.00390625, 2000.0, CAL_RATES, "2-Year T-Note (1/8 of 1/32)"),
        # FX (CME): US dollars per unit of the foreign currency.
        _spec("6E", 0.00005, 125000.0, CAL_FX, "Euro FX, 125,000 EUR"),
        _spec("M6E", 0.0001, 12500.0, CAL_FX, "Micro EUR/USD, 12,500 EUR", _MICRO),
        _spec("6J", 0.0000005, 12500000.0, CAL_FX, "Japanese Yen, 12,500,000 JPY"),
        _spec("6B", 0.0001, 62500.0, CAL_FX, "British Pound, 62,500 GBP"),
        _spec("6A", 0.00005, 100000.0, CAL_FX, "Australian Dollar, 100,000 AUD"),
        _spec("6C", 0.00005, 100000.0, CAL_FX, "Canadian Dollar, 100,000 CAD"),
        # Grains (CBOT): cents per bushel, 5,000 bushels ($50 per cent).
        _spec("ZC", 0.25, 50.0, CAL_GRAINS, "Corn, 5,000 bushels (cents/bu)"),
        _spec("ZS", 0.25, 50.0, CAL_GRAINS, "Soybeans, 5,000 bushels (cents/bu)"),
        _spec("ZW", 0.25, 50.0, CAL_GRAINS, "Chicago SRW Wheat, 5,000 bushels (cents/bu)"),
    )
}

SPEC_KEYS = ("tick_size", "point_value", "commission_per_side", "currency", "timezone", "calendar")

# "6E 03-26", "MNQ DEC25", "ESZ5", "ES 12-25": the root is the leading symbol.
_NT_NAME = re.compile(r"^\s*([A-Za-z0-9]+?)(?:\s+\S.*)?\s*$")


def contract_root(name: str) -> str:
    """Root symbol of a NinjaTrader instrument name: ``"6E 03-26"`` -> ``"6E"``."""
    match = _NT_NAME.match(name)
    return match.group(1).upper() if match else name.strip().upper()


def resolve_contract(name: str, overrides: dict[str, Any] | None = None) -> ContractSpec:
    """The spec of a contract by root (``"6E"``) or NinjaTrader name (``"6E 03-26"``).

    Args:
        name: Root symbol or NinjaTrader instrument name, case-insensitive.
        overrides: Fields to replace (``tick_size``, ``point_value``,
            ``commission_per_side``, ``currency``, ``timezone``, ``calendar``,
            ``description``). For a contract not in the table, ``tick_size`` and
            ``point_value`` are required; the rest default to USD, Chicago and the CME
            Globex equity calendar. ``None`` values are ignored.

    Raises:
        UnknownContractError: for a contract outside the table without a tick size and
            point value, saying how to supply them.
        ValueError: for an unknown override key or an invalid value.
    """
    root = contract_root(name)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    allowed = {f.name for f in dataclasses.fields(ContractSpec)} - {"symbol"}
    unknown = set(given) - allowed
    if unknown:
        raise ValueError(
            f"unknown contract setting(s) {sorted(unknown)}; expected some of {sorted(allowed)}"
        )
    base = CONTRACTS.get(root)
    if base is not None:
        return dataclasses.replace(base, **given) if given else base
    missing = [k for k in ("tick_size", "point_value") if k not in given]
    if missing or not root:
        known = ", ".join(sorted(CONTRACTS))
        raise UnknownContractError(
            f"unknown contract {name!r} (known: {known}); supply its spec: on the command "
            "line --tick-size and --point-value (and optionally --commission, --calendar), "
            "or a [contract] section with tick_size and point_value in the config file"
        )
    return ContractSpec(symbol=root, **given)
