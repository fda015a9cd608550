"""Replay a bar file through a running daemon, as NinjaTrader would, and trade its replies.

The client says hello, backfills the first ``history`` bars, then sends every later bar
with its position and executes the reply with the environment's execution model
(:class:`env.execution.SimulatedPosition`): the next bar's ``on_bar`` fills entries at its
open and checks stops and targets, exactly as in training. Requests use the Lazy Pirate
pattern; a request that gets no reply after all tries is treated as HOLD and the bars keep
flowing. At the end any position is flattened at the last close.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from bridge.calendar import Calendars
from bridge.server import LazyPirateClient
from env.bars import EXCHANGE_TZ, Bars
from env.config import ACTION_NAMES, N_ACTIONS, WARMUP_BARS, Action
from env.contracts import ContractSpec, UnknownContractError, contract_root, resolve_contract
from env.execution import SimulatedPosition, Trade
from env.features import compute_market_features
from env.trading_env import EnvConfig

HISTORY_CHUNK = 2000  # bars per history message (about 250 KB, well under 1 MiB)
DEFAULT_INSTRUMENT = "NQ 12-25"  # the instrument replayed when no model card names one


@dataclass(frozen=True)
class ReplayConfig:
    """How to replay.

    Attributes:
        endpoint: The daemon's endpoint.
        client: Client id (unique per run by default, so old state cannot collide).
        instrument: Instrument name sent to the daemon; the orders execute on its contract
            terms (:func:`traded_contract`).
        history: Bars sent as history before the first bar message.
        max_bars: Bar messages to send after the history (None: to the end of the data).
        timeout_s: Reply timeout per try.
        retries: Tries per request before acting as HOLD.
        debug: Ask for the observations (``debug`` in each bar request).
        env: The model's settings: its contract (the terms of an instrument the contract
            table lacks) and the execution settings the replies are executed with.
    """

    endpoint: str
    client: str = field(default_factory=lambda: f"replay-{os.getpid()}")
    instrument: str = DEFAULT_INSTRUMENT
    history: int = WARMUP_BARS
    max_bars: int | None = None
    timeout_s: float = 2.0
    retries: int = 3
    debug: bool = False
    env: EnvConfig = field(default_factory=EnvConfig)

    def __post_init__(self) -> None:
        if self.history < 0:
            raise ValueError(f"--history must be >= 0, got {self.history}")
        if self.max_bars is not None and self.max_bars < 1:
            raise ValueError(f"--bars must be >= 1, got {self.max_bars}")


@dataclass
class ReplayResult:
    """What happened: one entry per bar message, trades, and failures."""

    actions: list[int] = field(default_factory=list)  # -1: no usable reply (acted as HOLD)
    sides: list[int] = field(default_factory=list)  # position side sent with each bar
    warming_up: list[bool] = field(default_factory=list)
    observations: list[np.ndarray] = field(default_factory=list)  # with debug
    replies: list[dict[str, Any]] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    missed: int = 0  # no reply after all tries
    errors: int = 0  # error replies
    timeouts: int = 0  # tries that timed out
    model_version: str = ""
    first_error: str = ""  # the first failure, as a sentence (error code: message)
    planned: int = 0  # bar messages the run was to send
    interrupted: bool = False  # stopped by Ctrl+C: the rest covers the bars replayed

    def histogram(self) -> dict[str, dict[str, int]]:
        """Action counts of the decided bars, overall, flat and in a position."""
        counts = {"all": [0] * N_ACTIONS, "flat": [0] * N_ACTIONS, "position": [0] * N_ACTIONS}
        for action, side, warming in zip(self.actions, self.sides, self.warming_up):
            if action < 0 or warming:
                continue
            counts["all"][action] += 1
            counts["flat" if side == 0 else "position"][action] += 1
        return {k: dict(zip(ACTION_NAMES, v)) for k, v in counts.items()}

    def summary(self) -> dict[str, Any]:
        """Trades, PnL and failures in plain numbers."""
        pnl = [t.pnl_dollars for t in self.trades]
        return {
            "model_version": self.model_version,
            "bars": len(self.actions),
            "trades": len(self.trades),
            "wins": sum(p > 0 for p in pnl),
            "net_pnl_dollars": round(sum(pnl), 2),
            "total_r": round(sum(t.r_multiple for t in self.trades), 3),
            "missed": self.missed,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "risk_refused": self.risk_refused(),
            "interrupted": self.interrupted,
        }

    def risk_refused(self) -> dict[str, int]:
        """Entries the daemon's risk rails refused, by rule."""
        counts: dict[str, int] = {}
        for reply in self.replies:
            rule = (reply.get("risk") or {}).get("rule")
            if rule is not None:
                counts[rule] = counts.get(rule, 0) + 1
        return counts


def position_message(position: SimulatedPosition, bars: Bars) -> dict[str, Any]:
    """The POSITION object NinjaTrader would send for ``position``."""
    if position.side == 0:
        return {
            "side": 0,
            "quantity": 0,
            "entry_price": None,
            "entry_time": None,
            "sl_price": None,
            "tp_price": None,
            "trailing": False,
        }
    return {
        "side": position.side,
        "quantity": 1,
        "entry_price": position.entry_price,
        "entry_time": str(bars.time[position.entry_bar]),
        "sl_price": position.stop_price,
        "tp_price": position.target_price,
        "trailing": position.trailing,
    }


def bar_object(bars: Bars, i: int) -> dict[str, Any]:
    """Bar ``i`` as a BAR object (exchange-local naive time, as the file has it)."""
    return {
        "time": str(bars.time[i]),
        "open": float(bars.open[i]),
        "high": float(bars.high[i]),
        "low": float(bars.low[i]),
        "close": float(bars.close[i]),
        "volume": float(bars.volume[i]),
    }


def execute(reply: dict[str, Any], position: SimulatedPosition, close: float, atr: float) -> None:
    """Carry out an action reply's ``orders`` on the simulated position."""
    action = reply["action"]
    orders = reply.get("orders") or {}
    if action in (Action.BUY, Action.SELL):
        side = 1 if action == Action.BUY else -1
        position.queue_entry(side, orders["stop_price"], orders["target_price"], atr)
    elif action == Action.MOVE_TO_BE:
        position.move_stop(orders["stop_price"])
    elif action == Action.ENABLE_TRAIL:
        position.enable_trailing(orders["trail_points"], close)
    elif action == Action.DISABLE_TRAIL:
        position.disable_trailing()


def run_replay(
    bars: Bars, config: ReplayConfig, progress: Callable[[int, int], None] | None = None
) -> ReplayResult:
    """Replay ``bars`` through the daemon at ``config.endpoint``.

    Ctrl+C (KeyboardInterrupt) while the bars are sent ends the run early: the result
    covers the bars answered so far, any position flattened at the last close, and says
    ``interrupted``.

    Raises:
        ConnectionError: the daemon did not answer hello or refused the history.
        KeyboardInterrupt: Ctrl+C before the first bar message.
    """
    history = min(config.history, len(bars))
    end = len(bars) if config.max_bars is None else min(len(bars), history + config.max_bars)
    traded = _traded_contract(config)
    # The ATR under the entries (their R) is floored at the traded contract's tick, as
    # the daemon's orders are priced on it: never another contract's.
    _, atr = compute_market_features(
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        bars.volume,
        bars.minute_of_day,
        tick_size=traded.tick_size,
    )
    result = ReplayResult()
    position = SimulatedPosition(traded, config.env.execution)
    envelope = {"v": 1, "client": config.client, "instrument": config.instrument}
    seq = 0
    with LazyPirateClient(config.endpoint, config.timeout_s, config.retries) as client:

        def ask(message: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal seq
            seq += 1
            raw = client.request(json.dumps({**envelope, "seq": seq, **message}).encode())
            result.timeouts = client.timeouts
            return None if raw is None else json.loads(raw)

        # As NinjaTrader does: the chart's own instrument terms, not the model's.
        spec = {"tick_size": traded.tick_size, "point_value": traded.point_value}
        # and the chart's bar period, which the daemon checks against the model's
        hello = ask(
            {"type": "hello", "instrument_spec": spec, "bar_period": bars.bar_period.to_json()}
        )
        if hello is None or not hello.get("ok"):
            raise ConnectionError(f"hello: {describe_failure(hello, config.endpoint)}")
        result.model_version = hello["model"]["version"]
        for start in range(0, history, HISTORY_CHUNK):
            stop = min(history, start + HISTORY_CHUNK)
            reply = ask(
                {"type": "history", "bars": [bar_object(bars, i) for i in range(start, stop)]}
            )
            if reply is None or not reply.get("ok"):
                raise ConnectionError(f"history: {describe_failure(reply, config.endpoint)}")
        calendars = Calendars(ZoneInfo(getattr(bars, "timezone", None) or EXCHANGE_TZ))
        calendars.build(traded)
        session: object = None
        session_pnl = 0.0  # realized P&L of the session, as NinjaTrader reports it
        result.planned = end - history
        seen = history - 1  # the last bar the simulated position has been through
        try:
            for i in range(history, end):
                trade = position.on_bar(i, bars.open[i], bars.high[i], bars.low[i], bars.close[i])
                seen = i
                point = calendars.point(traded, datetime.fromisoformat(str(bars.time[i])))
                if point.session != session:
                    session, session_pnl = point.session, 0.0
                if trade is not None:
                    result.trades.append(trade)
                    session_pnl += trade.pnl_dollars
                message: dict[str, Any] = {
                    "type": "bar",
                    "bar": bar_object(bars, i),
                    "position": position_message(position, bars),
                    "realized_pnl": round(session_pnl, 2),
                }
                if config.debug:
                    message["debug"] = True
                result.sides.append(position.side)
                reply = ask(message)
                _record(result, reply, config.endpoint)
                if reply is not None and reply.get("ok"):
                    execute(reply, position, float(bars.close[i]), float(atr[i]))
                if progress is not None:
                    progress(i - history + 1, end - history)
        except KeyboardInterrupt:  # Ctrl+C: keep what was replayed
            result.interrupted = True
            del result.sides[len(result.actions) :]  # a bar sent and not answered
        if seen >= history:
            trade = position.flatten(seen, float(bars.close[seen]))
            if trade is not None:
                result.trades.append(trade)
    return result


def describe_failure(reply: dict[str, Any] | None, endpoint: str) -> str:
    """One line for a missing or error reply: ``code: message``."""
    if reply is None:
        return f"no reply from {endpoint}; is the daemon running there?"
    error = reply.get("error")
    if not isinstance(error, dict):
        return f"an unreadable reply {reply}"
    return f"{error.get('code', 'error')}: {error.get('message', '')}"


def _record(result: ReplayResult, reply: dict[str, Any] | None, endpoint: str = "") -> None:
    if reply is None:
        result.missed += 1
    elif not reply.get("ok"):
        result.errors += 1
    if (reply is None or not reply.get("ok")) and not result.first_error:
        result.first_error = describe_failure(reply, endpoint)
    if reply is None or not reply.get("ok"):
        result.actions.append(-1)
        result.warming_up.append(False)
        return
    result.actions.append(reply["action"])
    result.warming_up.append(reply["warming_up"])
    result.replies.append(reply)
    debug = reply.get("debug")
    if debug is not None and debug.get("obs") is not None:
        result.observations.append(np.array(debug["obs"], dtype=np.float32))


def traded_contract(instrument: str, model_contract: ContractSpec) -> ContractSpec:
    """The terms ``instrument`` (e.g. ``"6E 03-26"``) trades on, as a NinjaTrader chart of
    it reports them: the model's contract (with any terms its card overrides) when the
    name is of that contract, else the contract table's (``env.contracts``, as the daemon
    resolves it).

    Raises:
        UnknownContractError: a name neither of the model's contract nor in the table.
    """
    if contract_root(instrument) == contract_root(model_contract.symbol):
        return model_contract
    return resolve_contract(instrument)


def _traded_contract(config: ReplayConfig) -> ContractSpec:
    """:func:`traded_contract` of ``config``; the model's contract for a name the table
    lacks (the command line refuses one before replaying)."""
    try:
        return traded_contract(config.instrument, config.env.instrument)
    except UnknownContractError:
        return config.env.instrument
