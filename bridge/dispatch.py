"""Turn one request into exactly one reply: the daemon's logic, with no sockets.

:meth:`Dispatcher.handle` never raises. Bad input becomes an error reply with a protocol
code; anything unexpected becomes an ``internal`` error reply and a logged traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any, NamedTuple, NoReturn

import structlog

from bridge import protocol
from bridge.calendar import Calendars
from bridge.config import DEFAULT_MAX_CLOCK_SKEW_S
from bridge.killswitch import KillSwitch
from bridge.orders import price_orders
from bridge.policy import LoadedPolicy
from bridge.protocol import Envelope, ProtocolError
from bridge.session import InstrumentSession, SessionStore
from env.config import ACTION_NAMES, ENTRY_ACTIONS, WARMUP_BARS, Action
from env.contracts import UnknownContractError, resolve_contract
from env.features import position_features
from env.mask import action_mask
from env.risk import RailState, Refusal, RiskConfig, is_stale
from env.trading_env import EnvConfig, entry_blocked_at

log = structlog.get_logger()

ACTIONS = list(ACTION_NAMES)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_SCALE_RATIO = 10.0  # tick sizes an order of magnitude apart: another price scale
ODD_GAP_RUN = 3  # equal gaps longer than the period in a row: the chart's period differs
SESSION_GAP_S = 3600.0  # longer gaps are session breaks, not a bar period
WARMUP_PROBS = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # the model is not asked: HOLD for certain
PROB_SCALE = 1e6  # probabilities in replies have 6 decimals
# The mask of each (side, entries allowed) as the reply's list and the log's tuple, built
# once from env.mask.action_mask (read only: never changed after this).
_MASKS: dict[tuple[int, bool], tuple[list[int], tuple[int, ...]]] = {
    (side, allowed): (mask, tuple(mask))
    for side in (-1, 0, 1)
    for allowed in (True, False)
    for mask in [action_mask(side, allowed).tolist()]
}


class Decision(NamedTuple):
    """What was decided for one bar (for the log, the histogram and tests)."""

    time: str
    action: int
    model_action: int
    side: int
    mask: tuple[int, ...]
    probs: tuple[float, ...]
    warming_up: bool
    guarded: bool
    risk_rule: str | None = None
    risk_detail: str | None = None


@dataclass(slots=True)
class Outcome:
    """A reply and what the server, the journal and the monitor need to know about it."""

    reply: bytes
    ok: bool
    type: str | None = None
    client: str | None = None
    instrument: str | None = None
    seq: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    decision: Decision | None = None
    retry: bool = False
    model_version: str = ""
    parsed: bool = True  # the request was a JSON object


class Dispatcher:
    """Validates requests, keeps per-client state and asks the policy for actions.

    Args:
        policy: The policy to serve (swap it with :meth:`swap_policy`).
        exchange_tz: Time zone that ``Z``/offset bar times are converted to.
        max_message_bytes: Larger requests get ``too_large``.
        max_sessions: Client+instrument states kept (least recently used dropped).
        clock: Monotonic seconds, for ``uptime_s``.
        now_s: The current time, UTC seconds since the epoch (``time.time``), for the
            clock-skew check.
        max_clock_skew_s: A bar this far ahead of ``now_s`` is refused.
        allow_other_scale: Serve instruments whose tick size is an order of magnitude
            from the model's contract (refused by default).
        risk: Limits of the risk rails.
        kill_switch: The persistent halt, or None (tests).
    """

    def __init__(
        self,
        policy: LoadedPolicy,
        *,
        exchange_tz: tzinfo,
        max_message_bytes: int,
        max_sessions: int,
        clock: Callable[[], float] = time.monotonic,
        now_s: Callable[[], float] = time.time,
        max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S,
        allow_other_scale: bool = False,
        risk: RiskConfig | None = None,
        kill_switch: KillSwitch | None = None,
    ) -> None:
        self.policy = policy
        self.risk = risk if risk is not None else RiskConfig()
        self.kill_switch = kill_switch
        self._halted = False
        # Log lines of the rails' state are kept until flush_logs() when defer_logs is
        # set (the daemon: it flushes after the reply is sent). Formatting and queueing a
        # line costs about 0.4 ms, and these lines come with exactly the bars that enter
        # or close a trade.
        self.defer_logs = False
        self._deferred: list[tuple[int, str, dict[str, Any]]] = []
        self.calendars = Calendars(exchange_tz)
        self.now_s = now_s
        self.max_clock_skew_s = max_clock_skew_s
        self.allow_other_scale = allow_other_scale
        self.zone = exchange_tz
        self.max_message_bytes = max_message_bytes
        self.sessions = SessionStore(max_sessions)
        self.clock = clock
        self.started = clock()
        # Bar requests of the usual shape are read by protocol.read_bar_request (False:
        # every request takes the general path; tests compare the two).
        self.fast_bars = True
        self._handlers: dict[
            str, Callable[[Envelope, dict[str, Any], InstrumentSession], Outcome]
        ] = {
            "hello": self._hello,
            "history": self._history,
            "bar": self._bar,
            "position": self._position,
        }

    def swap_policy(self, policy: LoadedPolicy) -> LoadedPolicy:
        """Serve ``policy`` from the next request on; returns the previous one."""
        previous, self.policy = self.policy, policy
        return previous

    def handle(self, raw: bytes) -> Outcome:
        """One reply for one request, whatever it holds."""
        obj: dict[str, Any] | None = None
        envelope: Envelope | None = None
        try:
            if len(raw) > self.max_message_bytes:
                raise ProtocolError(
                    protocol.TOO_LARGE,
                    f"request of {len(raw)} bytes is over the limit of {self.max_message_bytes} "
                    "bytes; send history in smaller batches",
                )
            request = protocol.read_bar_request(raw, self.zone) if self.fast_bars else None
            if request is not None:  # the usual bar request, read and checked in one pass
                envelope = request.envelope
                return self._dispatch(envelope, None, raw, request)
            obj = protocol.decode(raw)
            envelope = protocol.parse_envelope(obj)
            return self._dispatch(envelope, obj, raw)
        except ProtocolError as exc:
            return self._error(exc.code, exc.message, obj, envelope)
        except Exception as exc:
            seq = _seq(obj, envelope)
            log.exception(
                "internal_error",
                error=repr(exc),
                client=envelope.client if envelope else None,
                instrument=envelope.instrument if envelope else None,
                seq=seq,
                request=raw[:2000].decode("utf-8", "replace"),
            )
            return self._error(
                protocol.INTERNAL,
                "the daemon hit an unexpected error (details in its log); nothing was decided "
                "for this request, act as HOLD",
                obj,
                envelope,
            )

    # -- request types -------------------------------------------------------------

    def _dispatch(
        self,
        envelope: Envelope,
        obj: dict[str, Any] | None,
        raw: bytes,
        request: protocol.BarRequest | None = None,
    ) -> Outcome:
        """``obj``: the decoded request, None when ``request`` holds it read and checked."""
        if envelope.type == "ping":
            reply = protocol.ok_reply(
                "ping",
                envelope.seq,
                uptime_s=round(self.clock() - self.started, 3),
                model_version=self.policy.version,
            )
            return self._ok(envelope, reply)
        assert envelope.client is not None
        stream = self._stream(envelope)
        # A retry repeats the last processed request of this client+instrument: same type,
        # seq and body; it gets the byte-identical reply and the model is not run again.
        # The same seq with another body is refused: it never gets another bar's decision.
        # (A hello that reuses the last seq is a restarted client, not a retry.)
        seq = envelope.seq
        if seq is not None and seq == stream.last_seq:
            if envelope.type == stream.last_type and _same_request(raw, obj, stream):
                return Outcome(
                    stream.last_reply,
                    ok=True,
                    type=envelope.type,
                    client=envelope.client,
                    instrument=envelope.instrument,
                    seq=envelope.seq,
                    retry=True,
                    model_version=self.policy.version,
                )
            if envelope.type != "hello":
                raise ProtocolError(
                    protocol.OUT_OF_ORDER,
                    f"seq {seq} was already used for a different request of "
                    f"{envelope.client} / {envelope.instrument}; give each new request the "
                    "next seq, and resend a timed-out request unchanged",
                )
        if request is not None:
            outcome = self._bar_request(request, stream)
        else:
            assert obj is not None
            outcome = self._handlers[envelope.type](envelope, obj, stream)
        if seq is not None and outcome.ok:
            stream.last_seq = seq
            stream.last_type = envelope.type
            stream.last_raw = raw
            stream.last_request = obj
            stream.last_reply = outcome.reply
        return outcome

    def _hello(self, envelope: Envelope, obj: dict[str, Any], stream: InstrumentSession) -> Outcome:
        spec = protocol.parse_instrument_spec(obj.get("instrument_spec"))
        period = protocol.parse_bar_period(obj.get("bar_period"))
        if period is not None:
            trained = self.policy.bar_period
            if not protocol.same_period(period, trained):
                raise ProtocolError(
                    protocol.BAD_MESSAGE,
                    f"this chart's bars are {protocol.describe_period(period)} but model "
                    f"{self.policy.version} was trained on {protocol.describe_period(trained)} "
                    "bars; set the chart's period to match or serve a model trained on "
                    "this period",
                )
        previous = stream.instrument_spec
        stream.instrument_spec = spec
        try:
            self._terms(envelope, stream, refresh=True)
        except ProtocolError:
            stream.instrument_spec = previous
            stream.terms = None
            raise
        stream.declared_period = period
        last = stream.last_time
        reply = protocol.ok_reply(
            "hello",
            envelope.seq,
            protocol=protocol.PROTOCOL_VERSION,
            model=self.policy.info(),
            actions=ACTIONS,
            warmup_bars=WARMUP_BARS,
            bars_known=stream.bars_known,
            last_bar_time=None if last is None else last.isoformat(),
            risk=self.risk_summary(stream),
        )
        return self._ok(envelope, reply)

    def _history(
        self, envelope: Envelope, obj: dict[str, Any], stream: InstrumentSession
    ) -> Outcome:
        bars = protocol.parse_bars(obj.get("bars"), self.zone)
        now = self._now_local()
        for i, bar in enumerate(bars):
            ahead = (bar.local_time - now).total_seconds()
            if ahead > self.max_clock_skew_s:
                self._refuse_ahead(bar, ahead, f"bars[{i}]")
        new = [bar for bar in bars if stream.is_new(bar)]
        saved = (stream.seen_time, stream.odd_gap_s, stream.odd_gap_run)
        try:
            for bar in new:
                self._check_spacing(envelope, stream, bar, f"history bar {bar.time}")
        except ProtocolError:
            stream.seen_time, stream.odd_gap_s, stream.odd_gap_run = saved
            raise
        accepted = 0
        for bar in new:
            stream.add_bar(bar)
            accepted += 1
        reply = protocol.ok_reply("history", envelope.seq, accepted=accepted, ready=stream.ready)
        return self._ok(envelope, reply)

    def _position(
        self, envelope: Envelope, obj: dict[str, Any], stream: InstrumentSession
    ) -> Outcome:
        position = protocol.parse_position(obj.get("position"), self.zone)
        pnl = protocol.parse_realized_pnl(obj, position)
        stream.position = position
        self._rails(stream).on_position(position.side, pnl)
        return self._ok(envelope, protocol.ok_reply("position", envelope.seq))

    def _bar(self, envelope: Envelope, obj: dict[str, Any], stream: InstrumentSession) -> Outcome:
        return self._bar_request(protocol.parse_bar_request(obj, envelope, self.zone), stream)

    def _bar_request(self, request: protocol.BarRequest, stream: InstrumentSession) -> Outcome:
        envelope, bar, position = request.envelope, request.bar, request.position
        # The bar's close in UTC seconds, converted once for the clock check and the
        # session calendar (a time zone conversion costs microseconds after a pause).
        bar_utc = (bar.local_time.replace(tzinfo=self.zone) - _UNIX_EPOCH).total_seconds()
        ahead = bar_utc - self.now_s()
        if ahead > self.max_clock_skew_s:
            self._refuse_ahead(bar, ahead, "bar")
        if not stream.is_new(bar):
            last = stream.last_time
            raise ProtocolError(
                protocol.OUT_OF_ORDER,
                f"bar.time {bar.time} is not after the last bar "
                f"({last.isoformat() if last else ''}, "
                f"exchange time) of {envelope.client} / {envelope.instrument}; send each bar once, "
                "oldest first, and resend a timed-out request with its original seq",
            )
        terms = self._terms(envelope, stream)
        self._check_spacing(envelope, stream, bar, "bar")
        if position is not None:
            stream.position = position
        stream.add_bar(bar)
        stream.last_bar_at, stream.stale = self.clock(), False
        rails = self._rails(stream)
        point = self.calendars.point(terms.instrument, bar.local_time, bar_utc)
        rails.on_bar(point.session, bar.local_time, point.minutes_to_close)
        # The mask the model was trained with: no entries near or at the session close
        # on intraday bars (the env's rule, from the same calendar).
        stream.entries_allowed = not (
            self.policy.feature_terms[1] and entry_blocked_at(point.minutes_to_close, terms)
        )
        if position is not None:
            rails.on_position(position.side, request.realized_pnl)
        debug = request.debug
        if not stream.ready:
            return self._warming_up(envelope, bar.time, stream, debug)
        return self._decide(envelope, bar.time, stream, debug, terms)

    # -- decisions -----------------------------------------------------------------

    def _decide(
        self,
        envelope: Envelope,
        bar_time: str,
        stream: InstrumentSession,
        debug: bool,
        terms: EnvConfig,
    ) -> Outcome:
        policy = self.policy
        position = stream.position
        features = stream.features
        side = position.side
        obs = features.observation(self._position_features(stream))
        obs_normalized = policy.normalizer.checked(obs)
        if obs_normalized is None:
            raise ProtocolError(
                protocol.BAD_MESSAGE,
                "bar and position give a non-finite observation (check position.entry_price, "
                "sl_price and tp_price against the bar's prices); nothing was decided",
            )
        mask_list, mask = _MASKS[side, stream.entries_allowed]
        model_action, probs = policy.decide(obs_normalized, mask_list)
        guarded = side != 0 and model_action in ENTRY_ACTIONS
        proposed = Action.HOLD if guarded else model_action
        # The kill switch refuses entries only: its file is read when the model proposes
        # one (a file system call costs tens of microseconds on a bar that follows a
        # pause), and between requests (refresh_halt) for the logs and the rails' state.
        halted = self._check_halt() if proposed in ENTRY_ACTIONS else self._halted
        action, refusal = stream.risk.decide(proposed, halted)
        if refusal is not None and refusal.rule == "kill_switch":
            refusal = self._with_halt_reason(refusal)
        orders = price_orders(action, position, features.close, features.atr, terms)
        # Rounded half up at the 6th decimal. round(p, 6) differs only for a p within
        # about 1e-10 of a half-way point, and costs about 12 µs more per bar after a
        # pause (its correctly rounded decimal conversion).
        prob_list = [int(p * PROB_SCALE + 0.5) / PROB_SCALE if p else 0.0 for p in probs]
        reply = {  # protocol.ok_reply("bar", ...), written out: this runs on every bar
            "v": protocol.PROTOCOL_VERSION,
            "type": "bar",
            "ok": True,
            "seq": envelope.seq,
            "time": bar_time,
            "action": int(action),
            "name": ACTION_NAMES[action],
            "mask": mask_list,
            "probs": prob_list,
            "warming_up": False,
            "model_version": policy.version,
            "orders": orders,
        }
        if guarded:
            reply["guarded"] = True
        if refusal is not None:
            reply["risk"] = {
                "rule": refusal.rule,
                "detail": refusal.detail,
                "model_action": int(model_action),
            }
        if debug:
            reply["debug"] = {"obs": obs.tolist(), "obs_normalized": obs_normalized.tolist()}
        decision = Decision(
            bar_time,
            int(action),
            model_action,
            side,
            mask,
            tuple(prob_list),
            False,
            guarded,
            None if refusal is None else refusal.rule,
            None if refusal is None else refusal.detail,
        )
        self._log_risk_state(envelope.client, envelope.instrument, stream)
        # Its numbers are finite: checked observation, probabilities (masked_decision
        # raises otherwise), prices on the tick grid.
        return self._ok(envelope, reply, decision, protocol.encode_decision)

    def _warming_up(
        self, envelope: Envelope, bar_time: str, stream: InstrumentSession, debug: bool
    ) -> Outcome:
        side = stream.position.side
        mask, mask_tuple = _MASKS[side, stream.entries_allowed]
        reply = protocol.ok_reply(
            "bar",
            envelope.seq,
            time=bar_time,
            action=int(Action.HOLD),
            name=Action.HOLD.name,
            mask=mask,
            probs=list(WARMUP_PROBS),
            warming_up=True,
            model_version=self.policy.version,
            orders={},
        )
        if debug:
            reply["debug"] = {"obs": None, "obs_normalized": None}
        decision = Decision(
            bar_time,
            int(Action.HOLD),
            int(Action.HOLD),
            side,
            mask_tuple,
            WARMUP_PROBS,
            True,
            False,
        )
        return self._ok(envelope, reply, decision)

    @staticmethod
    def _position_features(stream: InstrumentSession) -> tuple[float, ...]:
        position = stream.position
        features = stream.features
        if position.side == 0:
            return position_features(0, 0.0, 0.0, 0.0, 0, features.close, features.atr)
        assert position.entry_local_time is not None
        return position_features(
            position.side,
            position.entry_price,  # type: ignore[arg-type]
            position.sl_price,  # type: ignore[arg-type]
            position.tp_price,  # type: ignore[arg-type]
            stream.bars_since(position.entry_local_time),
            features.close,
            features.atr,
        )

    # -- helpers -------------------------------------------------------------------

    def _stream(self, envelope: Envelope) -> InstrumentSession:
        assert envelope.client is not None and envelope.instrument is not None
        stream = self.sessions.stream(
            envelope.client, envelope.instrument, self.policy.feature_terms
        )
        self._sync_feature_terms(stream)
        return stream

    def _sync_feature_terms(self, stream: InstrumentSession) -> None:
        """Keep the stream's features on the served model's terms (a reload may change
        them). The ATR floor is the model's tick, as in training, but never above the
        traded contract's tick: a model allowed onto another price scale
        (--allow-other-price-scale) must not floor 6E's ATR at NQ's 0.25."""
        tick, intraday = self.policy.feature_terms
        terms = stream.terms
        if tick > 0 and terms is not None and stream.terms_policy is self.policy:
            tick = min(tick, terms.instrument.tick_size)
        features = stream.features
        if (features.indicators.tick_size, features.intraday) != (tick, intraday):
            stream.use_feature_terms(tick, intraday)

    # -- risk ----------------------------------------------------------------------

    def _rails(self, stream: InstrumentSession) -> RailState:
        if stream.risk is None:
            stream.risk = RailState(self.risk)
        return stream.risk  # type: ignore[no-any-return]

    def flush_logs(self) -> None:
        """Write the log lines kept back while ``defer_logs`` is set, oldest first."""
        deferred, self._deferred = self._deferred, []
        for level, event, fields in deferred:
            log.log(level, event, **fields)

    def _log(self, level: int, event: str, **fields: Any) -> None:
        if self.defer_logs:
            self._deferred.append((level, event, fields))
        else:
            log.log(level, event, **fields)

    def refresh_halt(self) -> None:
        """Read the kill switch now (between requests): logs an engage or release at
        once, and keeps the state that bars without a proposed entry report current."""
        self._check_halt()

    def _check_halt(self) -> bool:
        """Whether the kill switch is engaged; logs when that changes."""
        halted = self.kill_switch is not None and self.kill_switch.halted
        if halted != self._halted:
            self._halted = halted
            if halted:
                assert self.kill_switch is not None
                self._log(
                    logging.WARNING,
                    "kill_switch_engaged",
                    **(self.kill_switch.status() or {}),
                    detail="no new entries; management and exits continue; "
                    "`ai-trading-bridge resume` releases it",
                )
            else:
                self._log(logging.WARNING, "kill_switch_released", detail="entries allowed again")
            # every stream's state changed with it (monitor shows each stream's last line)
            for (client, instrument), stream in self.sessions.items():
                if stream.risk is not None:
                    self._log_risk_state(client, instrument, stream)
        return halted

    def _with_halt_reason(self, refusal: Refusal) -> Refusal:
        """The kill switch's refusal with the reason given to ``halt --reason``."""
        info = self.kill_switch.status() if self.kill_switch is not None else None
        reason = (info or {}).get("reason")
        if not reason:
            return refusal
        return dataclasses.replace(
            refusal,
            detail=f"trading is halted by the operator ({str(reason)[:200]}); "
            "`ai-trading-bridge resume` releases it",
        )

    def risk_summary(self, stream: InstrumentSession | None = None) -> dict[str, Any]:
        """The hello reply's ``risk``: the state and each rail's, for a stream (or for a
        fresh one); while the kill switch is engaged, also its ``reason`` and ``since``
        (the UTC time of ``halt``; None when the halt file cannot be read)."""
        rails = self._rails(stream) if stream is not None else RailState(self.risk)
        halted = self._check_halt()
        summary: dict[str, Any] = {"state": rails.state(halted), "rails": rails.rails(halted)}
        info = self.kill_switch.status() if halted and self.kill_switch is not None else None
        if info is not None:
            summary["reason"] = str(info.get("reason") or "")
            summary["since"] = info.get("halted_at")
        return summary

    def _log_risk_state(
        self, client: str | None, instrument: str | None, stream: InstrumentSession
    ) -> None:
        """Log the rails when the state or a counter changes (an entry, a closed trade):
        ``monitor`` shows the latest line, so it must not lag behind the counts. A state
        change other than to ``active`` is a warning; a counter change is info. The line
        carries the stream's last bar time (exchange time): the values are as of it."""
        rails = stream.risk
        halted = self._halted
        state = rails.state(halted)
        logged = (state, rails.counters())
        if logged != stream.risk_state:
            changed = state != stream.risk_state[0]
            stream.risk_state = logged
            last = stream.last_time
            self._log(
                logging.WARNING if changed and state != "active" else logging.INFO,
                "risk_state",
                client=client,
                instrument=instrument,
                state=state,
                bar_time=None if last is None else last.isoformat(),
                rails=rails.rails(halted),
            )

    def check_stale(self, utc_now: datetime) -> int:
        """The stale-data watchdog: warn once for each stream whose bars stopped while its
        market is open; returns how many streams are stale now."""
        period = self.policy.period_seconds
        now = self.clock()
        stale = 0
        for (client, instrument), stream in self.sessions.items():
            if stream.last_bar_at is None or stream.terms is None:
                continue
            if stream.stale:
                stale += 1
                continue
            waited = now - stream.last_bar_at
            market_open = self.calendars.is_open(stream.terms.instrument, utc_now)
            if is_stale(waited, period, self.risk.stale_after_bars, market_open):
                stream.stale = True
                stale += 1
                log.warning(
                    "stale_data",
                    client=client,
                    instrument=instrument,
                    seconds_since_bar=round(waited, 1),
                    bar_period=protocol.describe_period(self.policy.bar_period),
                    detail="no bar for several bar periods while the market is open: check "
                    "NinjaTrader's connection and the strategy (it may be disabled)",
                )
        return stale

    def _now_local(self) -> datetime:
        """The exchange-local wall clock now (naive)."""
        return datetime.fromtimestamp(self.now_s(), self.zone).replace(tzinfo=None)

    def _refuse_ahead(self, bar: protocol.Bar, ahead_s: float, path: str) -> NoReturn:
        """Refuse a bar more than ``max_clock_skew_s`` in the future (a client clock or
        time-zone mistake), before it can move the stream's last bar time."""
        now_local = self._now_local()
        raise ProtocolError(
            protocol.BAD_MESSAGE,
            f"{path}.time {bar.time} is {_duration(ahead_s)} ahead of the daemon's clock "
            f"({now_local.isoformat(timespec='seconds')} exchange time; the limit is "
            f"{_duration(self.max_clock_skew_s)}); check the computer's clock and the "
            "time zone of the bar times (send UTC with Z)",
        )

    def _check_spacing(
        self, envelope: Envelope, stream: InstrumentSession, bar: protocol.Bar, what: str
    ) -> None:
        """Refuse bars closer together than the model's period, and a run of equal gaps
        longer than it (a 5-minute chart on a 1-minute model); longer gaps are sessions.
        Daily (and longer) bars are refused only closer than half their period: a
        session's bar may be stamped at an early close, hours short of a whole day."""
        period = self.policy.period_seconds
        previous, stream.seen_time = stream.seen_time, bar.local_time
        if previous is None or period == 0:
            return
        gap = (bar.local_time - previous).total_seconds()
        if period >= 86400:
            if 0 < gap < period / 2:
                raise ProtocolError(
                    protocol.BAD_MESSAGE,
                    f"{what} comes {_duration(gap)} after the previous one; "
                    f"{self._period_advice(envelope)}",
                )
            return
        if 0 < gap < period:
            raise ProtocolError(
                protocol.BAD_MESSAGE,
                f"{what} comes {_duration(gap)} after the previous one; "
                f"{self._period_advice(envelope)}",
            )
        if gap == period or gap >= SESSION_GAP_S:
            stream.odd_gap_run = 0
            return
        if gap == stream.odd_gap_s:
            stream.odd_gap_run += 1
        else:
            stream.odd_gap_s, stream.odd_gap_run = gap, 1
        if stream.odd_gap_run >= ODD_GAP_RUN:
            raise ProtocolError(
                protocol.BAD_MESSAGE,
                f"the last {stream.odd_gap_run} bars came {_duration(gap)} apart; "
                f"{self._period_advice(envelope)}",
            )

    def _period_advice(self, envelope: Envelope) -> str:
        trained = protocol.describe_period(self.policy.bar_period)
        return (
            f"model {self.policy.version} was trained on {trained} bars: set the chart of "
            f"{envelope.client} / {envelope.instrument} to {trained} bars or serve a model "
            "trained on this period"
        )

    def _terms(
        self, envelope: Envelope, stream: InstrumentSession, refresh: bool = False
    ) -> EnvConfig:
        """The execution settings orders of this stream are priced with: the model's,
        on the traded contract (hello's instrument_spec, else the contract table)."""
        policy = self.policy
        if not refresh and stream.terms is not None and stream.terms_policy is policy:
            return stream.terms  # type: ignore[no-any-return]
        name = envelope.instrument or ""
        trained = policy.env_config.instrument
        spec = stream.instrument_spec
        try:
            instrument = resolve_contract(name, spec)
        except UnknownContractError:
            raise ProtocolError(
                protocol.BAD_MESSAGE,
                f"instrument {name!r} is not in the daemon's contract table, so its tick size "
                "is unknown; send instrument_spec (tick_size, point_value) in hello",
            ) from None
        except ValueError as exc:
            raise ProtocolError(protocol.BAD_MESSAGE, f"instrument_spec: {exc}") from None
        ratio = max(instrument.tick_size, trained.tick_size) / min(
            instrument.tick_size, trained.tick_size
        )
        if ratio > MAX_SCALE_RATIO and not self.allow_other_scale:
            raise ProtocolError(
                protocol.BAD_MESSAGE,
                f"model {policy.version} was trained on {trained.symbol} (tick "
                f"{trained.tick_size:g}); {name} trades at tick {instrument.tick_size:g}, "
                "another price scale; serve a model trained on this contract (or start the "
                "daemon with --allow-other-price-scale if you are sure)",
            )
        if instrument.symbol != trained.symbol:
            log.warning(
                "instrument_mismatch",
                client=envelope.client,
                instrument=envelope.instrument,
                model_instrument=trained.symbol,
                tick_size=instrument.tick_size,
                detail=f"orders are priced on {instrument.symbol}'s tick",
            )
        stream.terms = dataclasses.replace(policy.env_config, instrument=instrument)
        stream.terms_policy = policy
        self._sync_feature_terms(stream)
        return stream.terms  # type: ignore[no-any-return]

    def _ok(
        self,
        envelope: Envelope,
        reply: dict[str, Any],
        decision: Decision | None = None,
        encode: Callable[[dict[str, Any]], bytes] = protocol.encode,
    ) -> Outcome:
        return Outcome(
            encode(reply),
            ok=True,
            type=envelope.type,
            client=envelope.client,
            instrument=envelope.instrument,
            seq=envelope.seq,
            decision=decision,
            model_version=self.policy.version,
        )

    def _error(
        self, code: str, message: str, obj: dict[str, Any] | None, envelope: Envelope | None
    ) -> Outcome:
        seq = _seq(obj, envelope)
        return Outcome(
            protocol.error_reply(code, message, seq),
            ok=False,
            type=envelope.type if envelope else None,
            client=envelope.client if envelope else None,
            instrument=envelope.instrument if envelope else None,
            seq=seq,
            error_code=code,
            error_message=message,
            model_version=self.policy.version,
            parsed=obj is not None or envelope is not None,
        )


def _seq(obj: dict[str, Any] | None, envelope: Envelope | None) -> int | None:
    """The request's valid ``seq`` to echo in a reply (the envelope's once parsed)."""
    if envelope is not None:
        return envelope.seq
    return protocol.request_seq(obj) if obj is not None else None


def _same_request(raw: bytes, obj: dict[str, Any] | None, stream: InstrumentSession) -> bool:
    """Whether a request is the stream's last processed one: the same bytes, or the same
    JSON object (a client may resend it with other spacing or key order)."""
    if raw == stream.last_raw:
        return True
    if stream.last_request is None:  # read by read_bar_request: decoded only now
        stream.last_request = protocol.decode(stream.last_raw)
    return (obj if obj is not None else protocol.decode(raw)) == stream.last_request


def _duration(seconds: float) -> str:
    """A duration as people read it: ``45 s``, ``12.5 min``, ``3.5 h``, ``2.5 days``,
    ``412 days``, ``26,330 days (about 72 years)``; never in exponent notation."""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.6f}".rstrip("0").rstrip(".") + " s"  # bar times: microseconds
    if seconds < 7200:
        return f"{seconds / 60:.4g} min"
    if seconds < 172800:
        return f"{seconds / 3600:.4g} h"
    days = seconds / 86400
    if days < 100:
        return f"{days:.3g} days"
    if days < 730:
        return f"{days:,.0f} days"
    return f"{days:,.0f} days (about {days / 365.25:,.0f} years)"
