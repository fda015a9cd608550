"""Contract table, resolver, session calendars and bar periods."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from env.contracts import (
    CONTRACTS,
    ContractSpec,
    UnknownContractError,
    contract_root,
    resolve_contract,
    tick_decimals,
)
from env.periods import BarPeriod, detect_bar_period
from env.sessions import SessionCalendar, UnknownCalendarError, calendar_names

UTC = timezone.utc


@pytest.mark.parametrize(
    ("name", "tick", "point_value"),
    [
        ("6E 03-26", 0.00005, 125_000.0),
        ("6J 03-26", 0.0000005, 12_500_000.0),
        ("MNQ 12-25", 0.25, 2.0),
        ("ZN 03-26", 0.015625, 1000.0),
        ("ZT 03-26", 0.00390625, 2000.0),
        ("CL 02-26", 0.01, 1000.0),
        ("GC 02-26", 0.1, 100.0),
        ("ZC 03-26", 0.25, 50.0),
        ("YM 03-26", 1.0, 5.0),
    ],
)
def test_resolve_contract_ninjatrader_name_gives_cme_terms(
    name: str, tick: float, point_value: float
) -> None:
    spec = resolve_contract(name)
    assert spec.symbol == contract_root(name)
    assert spec.tick_size == tick
    assert spec.point_value == point_value


def test_every_table_calendar_exists_in_pandas_market_calendars() -> None:
    names = set(calendar_names())
    for spec in CONTRACTS.values():
        assert spec.calendar in names, spec.symbol
        assert spec.timezone == "America/Chicago"


def test_resolve_contract_unknown_says_how_to_supply_a_spec() -> None:
    with pytest.raises(UnknownContractError, match="--tick-size and --point-value"):
        resolve_contract("FDAX 03-26")


def test_resolve_contract_user_spec_and_overrides() -> None:
    spec = resolve_contract("FDAX 03-26", {"tick_size": 0.5, "point_value": 25.0})
    assert (spec.symbol, spec.tick_size, spec.point_value) == ("FDAX", 0.5, 25.0)
    cheaper = resolve_contract("NQ", {"commission_per_side": 1.0})
    assert cheaper.commission_per_side == 1.0 and cheaper.tick_size == 0.25
    with pytest.raises(ValueError, match="unknown contract setting"):
        resolve_contract("NQ", {"tick": 0.5})
    with pytest.raises(ValueError, match="tick_size must be a finite number > 0"):
        resolve_contract("NQ", {"tick_size": -1.0})


def test_contract_spec_from_v1_card_fills_table_fields() -> None:
    spec = ContractSpec.from_dict(
        {"symbol": "6E", "tick_size": 5e-05, "point_value": 125000.0, "commission_per_side": 2.5}
    )
    assert spec.calendar == "CMEGlobex_FX"
    assert ContractSpec.from_dict(spec.to_dict()) == spec


def test_tick_decimals() -> None:
    assert tick_decimals(0.00005) == 5
    assert tick_decimals(0.015625) == 6
    assert tick_decimals(0.25) == 2
    assert tick_decimals(1.0) == 0


def test_session_calendar_equity_open_close_and_halt() -> None:
    cal = SessionCalendar.for_contract(resolve_contract("NQ"))
    t = datetime(2025, 1, 6, 14, 31, tzinfo=UTC)  # 08:31 Chicago, Monday
    assert cal.is_open(t)
    assert cal.next_close(t) == datetime(2025, 1, 6, 22, 0, tzinfo=UTC)  # 16:00 Chicago
    assert cal.minutes_to_close(t) == 449.0
    halt = datetime(2025, 1, 6, 22, 30, tzinfo=UTC)  # 16:30 Chicago: daily halt
    assert not cal.is_open(halt)
    assert cal.minutes_to_close(halt) == float("inf")
    # Martin Luther King Day 2025: early close at 12:00 Chicago
    assert cal.next_close(datetime(2025, 1, 20, 15, 0, tzinfo=UTC)) == datetime(
        2025, 1, 20, 18, 0, tzinfo=UTC
    )
    # Saturday: closed
    assert not cal.is_open(np.datetime64("2025-01-11T15:00:00"))


def test_session_calendar_grains_break_is_a_halt() -> None:
    cal = SessionCalendar.for_contract(resolve_contract("ZC"))
    assert not cal.is_open(datetime(2025, 1, 8, 14, 0, tzinfo=UTC))  # 08:00 CT, break
    assert cal.is_open(datetime(2025, 1, 8, 14, 40, tzinfo=UTC))  # 08:40 CT


def test_session_calendar_unknown_name() -> None:
    with pytest.raises(UnknownCalendarError, match="pandas-market-calendars"):
        SessionCalendar.from_name("NoSuchExchange")


@pytest.mark.parametrize(
    ("step_seconds", "expected"),
    [
        (1, BarPeriod("second", 1)),
        (30, BarPeriod("second", 30)),
        (60, BarPeriod("minute", 1)),
        (300, BarPeriod("minute", 5)),
        (3600, BarPeriod("minute", 60)),
        (86_400, BarPeriod("day", 1)),
    ],
)
def test_detect_bar_period_from_spacing(step_seconds: int, expected: BarPeriod) -> None:
    start = np.datetime64("2025-01-06T00:00:00")
    times = start + np.arange(50) * np.timedelta64(step_seconds, "s")
    times = np.concatenate([times, times[-1:] + np.timedelta64(3 * 86_400, "s")])  # a gap
    assert detect_bar_period(times) == expected


def test_bar_period_json_round_trip_and_errors() -> None:
    period = BarPeriod("minute", 5)
    assert period.to_json() == {"type": "minute", "value": 5}
    assert BarPeriod.from_json(period.to_json()) == period
    assert BarPeriod.from_json({"type": "Minute", "value": 1}).seconds == 60
    assert BarPeriod("tick", 500).seconds is None
    with pytest.raises(ValueError, match="unknown bar period type"):
        BarPeriod.from_json({"type": "fortnight", "value": 1})
    with pytest.raises(ValueError, match="integer >= 1"):
        BarPeriod("minute", 0)
