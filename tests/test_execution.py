"""Order pricing and the simulated position: hand-computed trades and invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from env.config import Action
from env.execution import (
    ExecutionConfig,
    SimulatedPosition,
    bracket_prices,
    breakeven_stop,
    trail_distance,
    trailed_stop,
)
from env.instruments import INSTRUMENTS, get_instrument

NQ = INSTRUMENTS["NQ"]
CONFIG = ExecutionConfig(stop_atr=1.0, target_atr=2.0, trail_atr=1.0, slippage_ticks=1)


def _on_tick(price: float, tick: float = 0.25) -> bool:
    return abs(price / tick - round(price / tick)) < 1e-9


def test_bracket_prices_long_short_tick_rounded_away_from_close() -> None:
    assert bracket_prices(1, 21000.0, 8.1, NQ, CONFIG) == (20991.75, 21016.25)
    assert bracket_prices(-1, 21000.0, 8.1, NQ, CONFIG) == (21008.25, 20983.75)


def test_bracket_prices_tiny_atr_still_one_tick_away() -> None:
    stop, target = bracket_prices(1, 100.0, 1e-9, NQ, CONFIG)
    assert stop == 99.75 and target == 100.25


def test_long_trade_stopped_out_pnl_includes_commission_and_slippage() -> None:
    book = SimulatedPosition(NQ, CONFIG)
    assert book.apply(Action.BUY, close=21000.0, atr=8.0)
    assert book.on_bar(1, 21001.0, 21004.0, 20999.0, 21003.0) is None
    assert book.side == 1 and book.entry_price == 21001.25  # open + 1 tick slippage
    assert (book.stop_price, book.target_price) == (20992.0, 21016.0)
    trade = book.on_bar(2, 21000.0, 21001.0, 20990.0, 20995.0)
    assert trade is not None and trade.exit_reason == "stop"
    assert trade.exit_price == 20991.75  # stop 20992 - 1 tick slippage
    assert trade.pnl_points == pytest.approx(-9.5)
    assert trade.commission == 5.0
    assert trade.pnl_dollars == pytest.approx(-9.5 * 20 - 5.0)
    assert trade.r_multiple == pytest.approx((-9.5 * 20 - 5.0) / (8.0 * 20))
    assert book.side == 0


def test_short_trade_target_hit_fills_at_target_without_slippage() -> None:
    book = SimulatedPosition(NQ, CONFIG)
    book.apply(Action.SELL, close=21000.0, atr=8.0)
    book.on_bar(1, 21000.0, 21002.0, 20995.0, 20996.0)
    assert book.entry_price == 20999.75 and book.target_price == 20984.0
    trade = book.on_bar(2, 20990.0, 20991.0, 20980.0, 20985.0)
    assert trade is not None and trade.exit_reason == "target"
    assert trade.exit_price == 20984.0
    assert trade.pnl_dollars == pytest.approx((20999.75 - 20984.0) * 20 - 5.0)


def test_bar_touching_stop_and_target_stop_wins() -> None:
    book = SimulatedPosition(NQ, CONFIG)
    book.apply(Action.BUY, close=21000.0, atr=8.0)
    book.on_bar(1, 21000.0, 21001.0, 20999.0, 21000.0)
    trade = book.on_bar(2, 21000.0, 21030.0, 20980.0, 21000.0)
    assert trade is not None and trade.exit_reason == "stop"


def test_gap_through_stop_fills_at_open_less_slippage() -> None:
    book = SimulatedPosition(NQ, CONFIG)
    book.apply(Action.BUY, close=21000.0, atr=8.0)
    book.on_bar(1, 21000.0, 21001.0, 20999.0, 21000.0)
    trade = book.on_bar(2, 20980.0, 20985.0, 20975.0, 20984.0)
    assert trade is not None and trade.exit_price == 20979.75


def test_entry_fill_same_bar_stop() -> None:
    book = SimulatedPosition(NQ, CONFIG)
    book.apply(Action.SELL, close=21000.0, atr=4.0)
    trade = book.on_bar(1, 21000.0, 21010.0, 20999.0, 21005.0)
    assert trade is not None and trade.exit_reason == "stop" and trade.entry_bar == 1


def test_flatten_at_close_with_slippage() -> None:
    book = SimulatedPosition(NQ, CONFIG)
    book.apply(Action.BUY, close=21000.0, atr=8.0)
    book.on_bar(1, 21000.0, 21002.0, 20999.0, 21001.0)
    trade = book.flatten(1, 21001.0)
    assert trade is not None and trade.exit_reason == "flatten"
    assert trade.pnl_points == pytest.approx(21000.75 - 21000.25)


def test_entry_in_position_not_executed() -> None:
    book = SimulatedPosition(NQ, CONFIG)
    book.apply(Action.BUY, close=21000.0, atr=8.0)
    book.on_bar(1, 21000.0, 21002.0, 20999.0, 21001.0)
    assert not book.apply(Action.SELL, close=21001.0, atr=8.0)
    assert book.pending_side == 0 and book.side == 1


def test_move_to_breakeven_only_when_in_profit() -> None:
    assert breakeven_stop(1, 21000.25, 20992.0, close=20999.0, tick=0.25) == 20992.0
    assert breakeven_stop(1, 21000.25, 20992.0, close=21005.0, tick=0.25) == 21000.25
    assert breakeven_stop(-1, 20999.75, 21008.0, close=20990.0, tick=0.25) == 20999.75
    assert breakeven_stop(-1, 20999.75, 21008.0, close=21001.0, tick=0.25) == 21008.0


def test_trailing_follows_best_price_and_stays_below_close() -> None:
    assert trail_distance(8.1, NQ, CONFIG) == 8.0
    assert trailed_stop(1, 20990.0, 21020.0, 8.0, close=21018.0, tick=0.25) == 21012.0
    # the trail would sit above the close after a sharp reversal: clamp one tick below
    assert trailed_stop(1, 20990.0, 21020.0, 8.0, close=21010.0, tick=0.25) == 21009.75
    # never loosen
    assert trailed_stop(1, 21015.0, 21020.0, 8.0, close=21018.0, tick=0.25) == 21015.0


def test_get_instrument_from_ninjatrader_name() -> None:
    assert get_instrument("NQ 12-25") is NQ
    assert get_instrument("mes") is INSTRUMENTS["MES"]
    with pytest.raises(KeyError, match="--tick-size"):
        get_instrument("XYZ 01-26")


@st.composite
def episodes(draw: st.DrawFn) -> tuple[list[tuple[float, float, float, float]], list[int]]:
    n = draw(st.integers(min_value=2, max_value=60))
    price = 20000.0
    bars = []
    for _ in range(n):
        open_ = price + 0.25 * draw(st.integers(-20, 20))
        close = open_ + 0.25 * draw(st.integers(-40, 40))
        high = max(open_, close) + 0.25 * draw(st.integers(0, 20))
        low = min(open_, close) - 0.25 * draw(st.integers(0, 20))
        bars.append((open_, high, low, close))
        price = close
    actions = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    return bars, actions


@settings(max_examples=300, deadline=None)
@given(episodes(), st.floats(min_value=0.5, max_value=30.0))
def test_stops_never_move_against_position_and_never_beyond_close(episode, atr) -> None:
    bars, actions = episode
    book = SimulatedPosition(NQ, CONFIG)
    for i in range(len(bars) - 1):
        _, _, _, close = bars[i]
        side, stop, target = book.side, book.stop_price, book.target_price
        book.apply(actions[i], close, atr)
        if book.side != 0:
            # a stop placed or moved at this close is on the protective side of it
            assert (book.stop_price < close) if book.side > 0 else (book.stop_price > close)
            assert book.stop_price * book.side >= stop * side
            assert book.target_price == target
        if book.pending_side > 0:
            assert book.pending_stop < close < book.pending_target
        if book.pending_side < 0:
            assert book.pending_target < close < book.pending_stop
        was_side, stop_before = book.side, book.stop_price
        entered = book.pending_side != 0
        trade = book.on_bar(i + 1, *bars[i + 1])
        if trade is None and book.side != 0 and not entered and was_side == book.side:
            assert book.stop_price * book.side >= stop_before * book.side
        if book.side != 0:
            assert _on_tick(book.stop_price) and _on_tick(book.target_price)
            next_close = bars[i + 1][3]
            if book.trailing:
                assert book.stop_price * book.side < next_close * book.side or (
                    book.stop_price == stop_before
                )
        if trade is not None:
            expected = (trade.exit_price - trade.entry_price) * trade.side * 20.0 - 5.0
            assert trade.pnl_dollars == pytest.approx(expected)
