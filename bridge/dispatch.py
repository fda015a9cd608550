"""Turn one request into exactly one reply: the daemon's logic, with no sockets.

:meth:`Dispatcher.handle` never raises. Bad input becomes an error reply with a protocol
code; anything unexpected becomes an ``internal`` error reply and a logged traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

import numpy as np
import structlog

from bridge import protocol
from bridge.orders import price_orders
from bridge.policy import LoadedPolicy
from bridge.protocol import Envelope, ProtocolError
from bridge.session import InstrumentSession, SessionStore
from env.config import ACTION_NAMES, ENTRY_ACTIONS, WARMUP_BARS, Action
from env.features import build_observation, position_features
from env.instruments import get_instrument
from env.mask import action_mask

log = structlog.get_logger()

ACTIONS = list(ACTION_NAMES)
WARMUP_PROBS = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # the model is not asked: HOLD for certain
PROB_DIGITS = 6


@dataclass(frozen=True, slots=True)
class Decision:
    """What was decided for one bar (for the log, the histogram and tests)."""

    time: str
    action: int
    model_action: int
    side: int
    mask: tuple[int, ...]
    probs: tuple[float, ...]
    warming_up: bool
    guarded: bool


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
    """

    def __init__(
        self,
        policy: LoadedPolicy,
        *,
        exchange_tz: tzinfo,
        max_message_bytes: int,
        max_sessions: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.zone = exchange_tz
        self.max_message_bytes = max_message_bytes
        self.sessions = SessionStore(max_sessions)
        self.clock = clock
        self.started = clock()
        self._handlers: dict[str, Callable[[Envelope, dict[str, Any]], Outcome]] = {
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
            obj = protocol.decode(raw)
            envelope = protocol.parse_envelope(obj)
            return self._dispatch(envelope, obj)
        except ProtocolError as exc:
            return self._error(exc.code, exc.message, obj, envelope)
        except Exception as exc:
            seq = protocol.request_seq(obj) if obj is not None else None
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

    def _dispatch(self, envelope: Envelope, obj: dict[str, Any]) -> Outcome:
        if envelope.type == "ping":
            reply = protocol.ok_reply(
                "ping",
                envelope.seq,
                uptime_s=round(self.clock() - self.started, 3),
                model_version=self.policy.version,
            )
            return self._ok(envelope, reply)
        assert envelope.client is not None
        client = self.sessions.client(envelope.client)
        # A retry resends the same request: same seq, and so the same type. (A restarted
        # client whose new hello happens to reuse the last seq is not served a stale bar.)
        seq = envelope.seq
        if seq is not None and seq == client.last_seq and envelope.type == client.last_type:
            return Outcome(
                client.last_reply,
                ok=True,
                type=envelope.type,
                client=envelope.client,
                instrument=envelope.instrument,
                seq=envelope.seq,
                retry=True,
                model_version=self.policy.version,
            )
        outcome = self._handlers[envelope.type](envelope, obj)
        if envelope.seq is not None and outcome.ok:
            client.last_seq = envelope.seq
            client.last_type = envelope.type
            client.last_reply = outcome.reply
        return outcome

    def _hello(self, envelope: Envelope, obj: dict[str, Any]) -> Outcome:
        stream = self._stream(envelope)
        self._check_instrument(envelope)
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
        )
        return self._ok(envelope, reply)

    def _history(self, envelope: Envelope, obj: dict[str, Any]) -> Outcome:
        bars = protocol.parse_bars(obj.get("bars"), self.zone)
        stream = self._stream(envelope)
        accepted = 0
        for bar in bars:
            if stream.is_new(bar):
                stream.add_bar(bar)
                accepted += 1
        reply = protocol.ok_reply("history", envelope.seq, accepted=accepted, ready=stream.ready)
        return self._ok(envelope, reply)

    def _position(self, envelope: Envelope, obj: dict[str, Any]) -> Outcome:
        position = protocol.parse_position(obj.get("position"), self.zone)
        self._stream(envelope).position = position
        return self._ok(envelope, protocol.ok_reply("position", envelope.seq))

    def _bar(self, envelope: Envelope, obj: dict[str, Any]) -> Outcome:
        bar = protocol.parse_bar(obj.get("bar"), "bar", self.zone)
        raw_position = obj.get("position")
        position = (
            None if raw_position is None else protocol.parse_position(raw_position, self.zone)
        )
        debug = protocol.parse_debug(obj)
        stream = self._stream(envelope)
        if not stream.is_new(bar):
            last = stream.last_time
            raise ProtocolError(
                protocol.OUT_OF_ORDER,
                f"bar.time {bar.time} is not after the last bar "
                f"({last.isoformat() if last else ''}, "
                f"exchange time) of {envelope.client} / {envelope.instrument}; send each bar once, "
                "oldest first, and resend a timed-out request with its original seq",
            )
        if position is not None:
            stream.position = position
        stream.add_bar(bar)
        if not stream.ready:
            return self._warming_up(envelope, bar.time, stream, debug)
        return self._decide(envelope, bar.time, stream, debug)

    # -- decisions -----------------------------------------------------------------

    def _decide(
        self, envelope: Envelope, bar_time: str, stream: InstrumentSession, debug: bool
    ) -> Outcome:
        policy = self.policy
        position = stream.position
        features = stream.features
        side = position.side
        obs = build_observation(features.window(), self._position_features(stream))
        if not np.isfinite(obs).all():
            raise ProtocolError(
                protocol.BAD_MESSAGE,
                "bar and position give a non-finite observation (check position.entry_price, "
                "sl_price and tp_price against the bar's prices); nothing was decided",
            )
        obs_normalized = policy.normalizer(obs)
        mask_list = action_mask(side).tolist()
        model_action, probs = policy.decide(obs_normalized, mask_list)
        guarded = side != 0 and model_action in ENTRY_ACTIONS
        action = Action.HOLD if guarded else model_action
        orders = price_orders(action, position, features.close, features.atr, policy.env_config)
        prob_list = [round(p, PROB_DIGITS) for p in probs]
        reply = protocol.ok_reply(
            "bar",
            envelope.seq,
            time=bar_time,
            action=int(action),
            name=ACTION_NAMES[action],
            mask=mask_list,
            probs=prob_list,
            warming_up=False,
            model_version=policy.version,
            orders=orders,
        )
        if guarded:
            reply["guarded"] = True
        if debug:
            reply["debug"] = {"obs": obs.tolist(), "obs_normalized": obs_normalized.tolist()}
        decision = Decision(
            bar_time,
            int(action),
            model_action,
            side,
            tuple(mask_list),
            tuple(prob_list),
            False,
            guarded,
        )
        return self._ok(envelope, reply, decision)

    def _warming_up(
        self, envelope: Envelope, bar_time: str, stream: InstrumentSession, debug: bool
    ) -> Outcome:
        side = stream.position.side
        mask = action_mask(side).tolist()
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
            tuple(mask),
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
        return self.sessions.stream(envelope.client, envelope.instrument)

    def _check_instrument(self, envelope: Envelope) -> None:
        expected = self.policy.env_config.instrument.symbol
        try:
            symbol = get_instrument(envelope.instrument or "").symbol
        except KeyError:
            symbol = (envelope.instrument or "").split(" ")[0]
        if symbol != expected:
            log.warning(
                "instrument_mismatch",
                client=envelope.client,
                instrument=envelope.instrument,
                model_instrument=expected,
                detail="orders are priced with the model's contract terms",
            )

    def _ok(
        self, envelope: Envelope, reply: dict[str, Any], decision: Decision | None = None
    ) -> Outcome:
        return Outcome(
            protocol.encode(reply),
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
        seq = protocol.request_seq(obj) if obj is not None else None
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
            parsed=obj is not None,
        )
