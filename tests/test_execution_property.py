"""Order prices over generated contracts: always on the tick grid, always protective."""

from __future__ import annotations

import math

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from env.contracts import ContractSpec
from env.execution import (
    ExecutionConfig,
    bracket_prices,
    breakeven_stop,
    on_tick_grid,
    price_of_ticks,
    trail_distance,
    trailed_stop,
)

# Tick sizes as exchanges write them (a few significant digits, 1e-5 .. 10) and
# arbitrary floats in the same range.
decimal_ticks = st.builds(
    lambda mantissa, exponent: float(f"{mantissa}e{exponent}"),
    st.sampled_from([1, 2, 25, 5, 125, 15625, 3125, 78125, 390625]),
    st.integers(-8, 1),
).filter(lambda t: 1e-5 <= t <= 10)
any_ticks = st.floats(1e-5, 10.0, allow_nan=False, allow_infinity=False)
ticks = st.one_of(decimal_ticks, any_ticks)


def on_grid(price: float, tick: float) -> bool:
    """Independent check: the nearest whole tick count reproduces the price."""
    count = round(price / tick)
    return math.isclose(count * tick, price, rel_tol=1e-12, abs_tol=tick * 1e-6)


@st.composite
def markets(draw: st.DrawFn) -> tuple[ContractSpec, float, float, ExecutionConfig]:
    tick = draw(ticks)
    price = draw(st.floats(0.5, 100_000.0))
    count = round(price / tick)
    assume(count >= 4)
    close = price_of_ticks(count, tick)
    atr = draw(st.floats(0.0, 0.05)) * close + tick  # ATR is floored at one tick
    spec = ContractSpec("GEN", tick_size=tick, point_value=1.0)
    config = ExecutionConfig(
        stop_atr=draw(st.floats(0.1, 5.0)),
        target_atr=draw(st.floats(0.1, 5.0)),
        trail_atr=draw(st.floats(0.1, 5.0)),
    )
    return spec, close, atr, config


@settings(max_examples=400, deadline=None)
@given(market=markets(), side=st.sampled_from([1, -1]))
def test_bracket_prices_on_grid_and_around_the_close(
    market: tuple[ContractSpec, float, float, ExecutionConfig], side: int
) -> None:
    spec, close, atr, config = market
    stop, target = bracket_prices(side, close, atr, spec, config)
    tick = spec.tick_size
    assert on_grid(stop, tick) and on_tick_grid(stop, tick)
    assert on_grid(target, tick) and on_tick_grid(target, tick)
    if side > 0:
        assert stop < close < target
    else:
        assert target < close < stop
    distance = trail_distance(atr, spec, config)
    assert on_grid(distance, tick) and distance >= tick * (1 - 1e-12)


@settings(max_examples=400, deadline=None)
@given(
    market=markets(),
    side=st.sampled_from([1, -1]),
    entry_moves=st.integers(-50, 50),
    close_moves=st.integers(-50, 50),
    best_moves=st.integers(0, 80),
)
def test_breakeven_and_trail_on_grid_and_protective(
    market: tuple[ContractSpec, float, float, ExecutionConfig],
    side: int,
    entry_moves: int,
    close_moves: int,
    best_moves: int,
) -> None:
    spec, entry_close, atr, config = market
    tick = spec.tick_size
    stop, _ = bracket_prices(side, entry_close, atr, spec, config)
    base = round(entry_close / tick)
    # Entry fills at an open on the grid; later closes on the grid, above zero.
    entry = price_of_ticks(base + entry_moves, tick)
    close = price_of_ticks(base + close_moves, tick)
    assume(entry > 0 and close > 0)
    # Still in the trade: the close has not reached the stop.
    assume(stop < close if side > 0 else stop > close)

    be = breakeven_stop(side, entry, stop, close, tick)
    assert on_grid(be, tick)
    assert (be < close) if side > 0 else (be > close)
    assert (be >= stop) if side > 0 else (be <= stop)

    best = price_of_ticks(base + close_moves + side * best_moves, tick)
    assume(best > 0)
    distance = trail_distance(atr, spec, config)
    trailed = trailed_stop(side, be, best, distance, close, tick)
    assert on_grid(trailed, tick)
    assert (trailed < close) if side > 0 else (trailed > close)
    assert (trailed >= be) if side > 0 else (trailed <= be)


def test_euro_fx_prices_are_exact_decimals() -> None:
    spec = ContractSpec("6E", tick_size=0.00005, point_value=125_000.0)
    stop, target = bracket_prices(1, 1.0817, 0.00073, spec, ExecutionConfig())
    # 1.0817 - 0.00073 = 1.08097 -> floor 1.08095; 1.0817 + 0.00146 = 1.08316 -> 1.0832
    assert (repr(stop), repr(target)) == ("1.08095", "1.0832")
