"""Wire protocol v1 (docs/protocol.md): parse and validate requests, build replies.

No sockets here: :mod:`bridge.server` moves bytes, this module turns bytes into checked
messages and replies into bytes. Every problem with a request raises
:class:`ProtocolError` carrying one of the protocol's error codes and a sentence that
names the field and what was expected. Unknown keys are ignored (forward compatibility);
every known field is checked, and a non-finite number (Python's json reads ``NaN`` and
``Infinity`` literals) is refused as ``bad_message`` naming the field, so it never reaches
the model.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, tzinfo
from typing import Any, Literal, NamedTuple

import msgspec
import orjson

from env.bars import check_bar
from env.periods import BarPeriod

PROTOCOL_VERSION = 1
REQUEST_TYPES = ("hello", "history", "bar", "position", "ping")
NEEDS_CLIENT = frozenset({"hello", "history", "bar", "position"})
NEEDS_SEQ = frozenset({"bar", "position"})
MAX_ID_LENGTH = 128  # client and instrument ids
MAX_TIME_LENGTH = 64
MAX_SEQ = 2**63 - 1  # a C# long

# Error codes (PROTOCOL.md: MUST use these).
BAD_JSON = "bad_json"
BAD_MESSAGE = "bad_message"
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_TYPE = "unknown_type"
OUT_OF_ORDER = "out_of_order"
TOO_LARGE = "too_large"
INTERNAL = "internal"
ERROR_CODES = (
    BAD_JSON,
    BAD_MESSAGE,
    UNSUPPORTED_VERSION,
    UNKNOWN_TYPE,
    OUT_OF_ORDER,
    TOO_LARGE,
    INTERNAL,
)


class ProtocolError(Exception):
    """A request the daemon refuses; becomes an error reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Envelope(NamedTuple):
    """The fields every request shares."""

    type: str
    client: str | None
    instrument: str | None
    seq: int | None


class Bar(NamedTuple):
    """One closed bar, checked.

    Attributes:
        time: The time exactly as sent (echoed in the reply).
        local_time: The exchange-local wall clock of the bar's close, naive.
    """

    time: str
    local_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def minute_of_day(self) -> int:
        """Minute of the exchange-local day (0..1439), as the training data computes it."""
        return self.local_time.hour * 60 + self.local_time.minute


class Position(NamedTuple):
    """The position as NinjaTrader reports it (the source of truth)."""

    side: int = 0
    quantity: float = 0.0
    entry_price: float | None = None
    entry_time: str | None = None
    entry_local_time: datetime | None = None
    sl_price: float | None = None
    tp_price: float | None = None
    trailing: bool = False
    realized_pnl: float | None = None  # v1.1: the strategy's session P&L, account currency


FLAT = Position()


# -- decoding ------------------------------------------------------------------------


_DECODE = json.JSONDecoder().decode  # what json.loads(text) calls
MAX_FAST_DECODE_BYTES = 8192  # a bar request is about 400 bytes
# Every digit as "0", every other byte as " ": a run of 19 zeros is a run of 19 digits,
# the shortest integer orjson might not read exactly (it is exact below 2**63).
_DIGITS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_LONG_DIGIT_RUN = b"0" * 19


def decode(raw: bytes) -> dict[str, Any]:
    """Bytes to a JSON object, or ``bad_json``.

    The result, or the error, is exactly what ``json.loads`` gives. A ``bar`` request, the
    one sent every bar, is read by orjson (4x faster); orjson would read an integer
    beyond 64 bits as a float, so a request holding a run of 19 or more digits, every
    other request type, and anything orjson refuses (``NaN``/``Infinity`` literals, a
    lone surrogate, invalid UTF-8, deep nesting) are read by ``json.loads``, which
    decides and words any error.
    """
    obj = None
    if len(raw) <= MAX_FAST_DECODE_BYTES and _LONG_DIGIT_RUN not in raw.translate(_DIGITS):
        try:  # noqa: SIM105 (contextlib.suppress costs a context manager per bar)
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    if type(obj) is dict and obj.get("type") == "bar":
        return obj
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            BAD_JSON, f"request is not UTF-8 text (byte {exc.start}); send one UTF-8 JSON object"
        ) from None
    try:
        obj = _DECODE(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            BAD_JSON, f"request is not valid JSON ({exc.msg} at character {exc.pos})"
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. too deeply nested, too many digits
        raise ProtocolError(BAD_JSON, f"request is not usable JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ProtocolError(
            BAD_JSON, f"request must be a JSON object {{...}}, got {_describe(obj)}"
        )
    return obj


class BarRequest(NamedTuple):
    """A checked ``bar`` request: what :func:`read_bar_request` gives."""

    envelope: Envelope
    bar: Bar
    position: Position | None
    debug: bool
    realized_pnl: float | None


class _WireBar(msgspec.Struct):
    time: str
    open: float
    high: float
    low: float
    close: float
    volume: float


class _WirePosition(msgspec.Struct):
    side: int
    quantity: float | None = None
    entry_price: float | None = None
    entry_time: str | None = None
    sl_price: float | None = None
    tp_price: float | None = None
    trailing: bool | None = None
    realized_pnl: float | None = None


class _WireBarRequest(msgspec.Struct):
    v: int
    type: Literal["bar"]
    client: str
    instrument: str
    seq: int
    bar: _WireBar
    position: _WirePosition | None = None
    debug: bool | None = None
    realized_pnl: float | None = None


_READ_BAR_REQUEST = msgspec.json.Decoder(_WireBarRequest)


def read_bar_request(raw: bytes, zone: tzinfo) -> BarRequest | None:
    """A valid ``bar`` request read and checked in one pass, or None for anything else.

    The request sent on every bar is read by msgspec straight into typed fields, which
    checks the JSON and every field's type in one call (the general path, :func:`decode`
    then :func:`parse_envelope`, :func:`parse_bar`, :func:`parse_position`, costs about
    60 µs more on a bar that follows a pause). The values are then checked as the general
    path checks them. This function only ever accepts: on None the caller runs the general
    path, which decides and words any error. What it accepts, the general path accepts
    with the same result (tests/test_bridge_fast_path.py). Unknown keys are ignored, as
    there; a repeated key counts with its last value, as in ``json.loads``; a request
    that is not UTF-8 (anywhere, unknown keys included), nests too deep for msgspec or
    is longer than ``MAX_FAST_DECODE_BYTES`` (a bar request is about 400 bytes; a history
    of bars is read once, by the general path) goes the general way.
    """
    if len(raw) > MAX_FAST_DECODE_BYTES:  # a history, not a bar: not worth a first read
        return None
    if not raw.isascii():  # msgspec does not check the UTF-8 of values it skips
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        wire = _READ_BAR_REQUEST.decode(raw)
    except (msgspec.DecodeError, RecursionError):  # DecodeError: also a field's type
        return None
    client, instrument, seq, bar = wire.client, wire.instrument, wire.seq, wire.bar
    if (
        wire.v != PROTOCOL_VERSION
        or not 0 < len(client) <= MAX_ID_LENGTH
        or not 0 < len(instrument) <= MAX_ID_LENGTH
        or not 0 <= seq <= MAX_SEQ
    ):
        return None
    open_, high, low, close, volume = bar.open, bar.high, bar.low, bar.close, bar.volume
    if check_bar(open_, high, low, close, volume) is not None:
        return None
    position = None if wire.position is None else _read_position(wire.position, zone)
    pnl = wire.realized_pnl
    if (position is None and wire.position is not None) or (
        pnl is not None and not -math.inf < pnl < math.inf
    ):
        return None
    try:
        local_time = parse_time(bar.time, "bar.time", zone)
    except ProtocolError:
        return None
    return BarRequest(
        Envelope("bar", client, instrument, seq),
        Bar(bar.time, local_time, open_, high, low, close, volume),
        position,
        bool(wire.debug),
        pnl if pnl is not None else (None if position is None else position.realized_pnl),
    )


def _read_position(wire: _WirePosition, zone: tzinfo) -> Position | None:
    """:func:`parse_position` of a typed POSITION, or None where it would raise."""
    side, quantity, pnl = wire.side, wire.quantity, wire.realized_pnl
    prices = (wire.entry_price, wire.sl_price, wire.tp_price)
    if (
        side not in (-1, 0, 1)
        or (quantity is not None and not 0 <= quantity < math.inf)
        or (pnl is not None and not -math.inf < pnl < math.inf)
    ):
        return None
    for price in prices:
        if price is not None and not 0 < price < math.inf:
            return None
    entry_time, entry_local = wire.entry_time, None
    if entry_time is not None:
        try:
            entry_local = parse_time(entry_time, "position.entry_time", zone)
        except ProtocolError:
            return None
    if side != 0 and (entry_local is None or None in prices):
        return None
    return Position(
        side=side,
        quantity=0.0 if quantity is None else quantity,
        entry_price=prices[0],
        entry_time=entry_time,
        entry_local_time=entry_local,
        sl_price=prices[1],
        tp_price=prices[2],
        trailing=bool(wire.trailing),
        realized_pnl=pnl,
    )


def request_seq(obj: dict[str, Any]) -> int | None:
    """The request's ``seq`` if it is a valid one, to echo in any reply; else None."""
    seq = obj.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= MAX_SEQ:
        return seq
    return None


def parse_envelope(obj: dict[str, Any]) -> Envelope:
    """Check version, type, client, instrument and seq, in that order."""
    seq = request_seq(obj)
    if "v" not in obj:
        raise ProtocolError(BAD_MESSAGE, "field v is missing; expected the protocol version 1")
    version = obj["v"]
    if not _is_int(version):
        raise ProtocolError(
            BAD_MESSAGE, f"field v must be the integer protocol version 1, got {_describe(version)}"
        )
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            UNSUPPORTED_VERSION,
            f"protocol version {str(version)[:20]} is not supported; this daemon speaks version "
            f"{PROTOCOL_VERSION}: update the NinjaTrader strategy or the daemon",
        )
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(
            BAD_MESSAGE,
            f"field type must be a string, one of {', '.join(REQUEST_TYPES)}; "
            f"got {_describe(kind)}",
        )
    if kind not in REQUEST_TYPES:
        raise ProtocolError(
            UNKNOWN_TYPE,
            f"unknown message type {kind[:40]!r}; expected one of {', '.join(REQUEST_TYPES)}",
        )
    client = instrument = None
    if kind in NEEDS_CLIENT:
        client = _identifier(obj, "client")
        instrument = _identifier(obj, "instrument")
    if obj.get("seq") is not None and seq is None:
        raise ProtocolError(
            BAD_MESSAGE,
            f"field seq must be an integer from 0 to {MAX_SEQ}, got {_describe(obj['seq'])}",
        )
    if seq is None and kind in NEEDS_SEQ:
        raise ProtocolError(
            BAD_MESSAGE, f"field seq is missing; a {kind} request needs an integer seq"
        )
    return Envelope(kind, client, instrument, seq)


def parse_bar(value: Any, path: str, zone: tzinfo) -> Bar:
    """Check a BAR object; ``path`` names it in error messages (``bar``, ``bars[3]``)."""
    if not isinstance(value, dict):
        raise ProtocolError(BAD_MESSAGE, f"{path} must be a BAR object, got {_describe(value)}")
    text = value.get("time")
    local_time = parse_time(text, f"{path}.time", zone)
    open_ = number(value, "open", path)
    high = number(value, "high", path)
    low = number(value, "low", path)
    close = number(value, "close", path)
    volume = number(value, "volume", path)
    problem = check_bar(open_, high, low, close, volume)
    if problem:
        raise ProtocolError(BAD_MESSAGE, f"{path}: {problem}")
    return Bar(text, local_time, open_, high, low, close, volume)  # type: ignore[arg-type]


def parse_bars(value: Any, zone: tzinfo) -> tuple[Bar, ...]:
    """Check the ``bars`` list of a history request (all or nothing)."""
    if not isinstance(value, list):
        raise ProtocolError(
            BAD_MESSAGE, f"bars must be a list of BAR objects, oldest first; got {_describe(value)}"
        )
    return tuple(parse_bar(item, f"bars[{i}]", zone) for i, item in enumerate(value))


def parse_position(value: Any, zone: tzinfo) -> Position:
    """Check a POSITION object. Every non-null field is checked; in a position
    ``entry_price``, ``entry_time``, ``sl_price`` and ``tp_price`` are required."""
    if not isinstance(value, dict):
        raise ProtocolError(
            BAD_MESSAGE, f"position must be a POSITION object, got {_describe(value)}"
        )
    side = value.get("side")
    if not _is_int(side) or side not in (-1, 0, 1):
        raise ProtocolError(
            BAD_MESSAGE,
            f"position.side must be -1 (short), 0 (flat) or 1 (long), got {_describe(side)}",
        )
    quantity = _optional_number(value, "quantity", "position", positive=False)
    trailing = value.get("trailing")
    if trailing is not None and not isinstance(trailing, bool):
        raise ProtocolError(
            BAD_MESSAGE, f"position.trailing must be true or false, got {_describe(trailing)}"
        )
    prices = {
        k: _optional_number(value, k, "position") for k in ("entry_price", "sl_price", "tp_price")
    }
    pnl = value.get("realized_pnl")
    realized_pnl = None if pnl is None else _finite(pnl, "position.realized_pnl")
    entry_text = value.get("entry_time")
    entry_local = (
        None if entry_text is None else parse_time(entry_text, "position.entry_time", zone)
    )
    if side != 0:
        for key, price in (*prices.items(), ("entry_time", entry_local)):
            if price is None:
                raise ProtocolError(
                    BAD_MESSAGE,
                    f"position.{key} is missing; a {'long' if side > 0 else 'short'} position "
                    "needs entry_price, entry_time, sl_price and tp_price",
                )
    return Position(
        side=side,
        quantity=0.0 if quantity is None else quantity,
        entry_price=prices["entry_price"],
        entry_time=entry_text,
        entry_local_time=entry_local,
        sl_price=prices["sl_price"],
        tp_price=prices["tp_price"],
        trailing=bool(trailing),
        realized_pnl=realized_pnl,
    )


def parse_bar_request(obj: dict[str, Any], envelope: Envelope, zone: tzinfo) -> BarRequest:
    """Check the body of a ``bar`` request whose envelope is checked (the general path;
    :func:`read_bar_request` is the fast one)."""
    bar = parse_bar(obj.get("bar"), "bar", zone)
    raw_position = obj.get("position")
    position = None if raw_position is None else parse_position(raw_position, zone)
    debug = parse_debug(obj)
    return BarRequest(envelope, bar, position, debug, parse_realized_pnl(obj, position))


def parse_instrument_spec(value: Any) -> dict[str, Any] | None:
    """hello's optional ``instrument_spec`` (NinjaTrader's MasterInstrument values)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError(
            BAD_MESSAGE,
            "instrument_spec must be an object like "
            f'{{"tick_size": 0.25, "point_value": 20.0}}, got {_describe(value)}',
        )
    spec: dict[str, Any] = {
        "tick_size": _optional_number(value, "tick_size", "instrument_spec"),
        "point_value": _optional_number(value, "point_value", "instrument_spec"),
    }
    for key in ("tick_size", "point_value"):
        if spec[key] is None:
            raise ProtocolError(
                BAD_MESSAGE,
                f"instrument_spec.{key} is missing; send MasterInstrument.TickSize and "
                "MasterInstrument.PointValue",
            )
    currency = value.get("currency")
    if currency is not None and (not isinstance(currency, str) or len(currency) > 8):
        raise ProtocolError(
            BAD_MESSAGE,
            f"instrument_spec.currency must be a code like USD, got {_describe(currency)}",
        )
    spec["currency"] = currency
    return spec


def parse_bar_period(value: Any, path: str = "bar_period") -> dict[str, Any] | None:
    """A BarPeriod object ``{"type": "minute", "value": 1}`` (NinjaTrader's capitalised
    type names accepted, returned lower-case), or None when absent."""
    if value is None:
        return None
    try:
        return BarPeriod.from_json(value).to_json()
    except (ValueError, TypeError) as exc:
        raise ProtocolError(BAD_MESSAGE, f"{path}: {exc}") from None


def period_seconds(period: dict[str, Any]) -> int:
    """Seconds between bars of a time-based period; 0 for tick, volume and range bars."""
    try:
        return BarPeriod.from_json(period).seconds or 0
    except (ValueError, TypeError):
        return 0


def same_period(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two bar periods are the same: equal seconds for time-based periods (``60``
    seconds as ``minute:1`` or ``second:60``), else equal as given (tick, volume, range)."""
    seconds = period_seconds(a)
    return seconds == period_seconds(b) and (seconds != 0 or a == b)


def describe_period(period: dict[str, Any]) -> str:
    """``1-minute``, ``5-minute``, ``1-day`` ... for messages."""
    return f"{period.get('value')}-{period.get('type')}"


def parse_realized_pnl(obj: dict[str, Any], position: Position | None) -> float | None:
    """The session's realized P&L: the request's ``realized_pnl`` (PROTOCOL v1.1), else
    the position object's, else None."""
    value = obj.get("realized_pnl")
    if value is not None:
        return _finite(value, "realized_pnl")
    return None if position is None else position.realized_pnl


def parse_debug(obj: dict[str, Any]) -> bool:
    """The optional ``debug`` flag."""
    debug = obj.get("debug", False)
    if debug is None:
        return False
    if not isinstance(debug, bool):
        raise ProtocolError(
            BAD_MESSAGE, f"field debug must be true or false, got {_describe(debug)}"
        )
    return debug


def parse_time(text: Any, path: str, zone: tzinfo) -> datetime:
    """An ISO-8601 time as the exchange-local wall clock (naive).

    Naive times are taken as exchange-local (the training data's convention); a time with
    ``Z`` or an offset is converted to ``zone`` first.
    """
    if not isinstance(text, str) or not text or len(text) > MAX_TIME_LENGTH:
        raise ProtocolError(
            BAD_MESSAGE,
            f"{path} must be an ISO-8601 time string like 2025-11-07T14:31:00, "
            f"got {_describe(text)}",
        )
    iso = text[:-1] + "+00:00" if text[-1] in "Zz" else text
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        raise ProtocolError(
            BAD_MESSAGE, f"{path} {text!r} is not an ISO-8601 time like 2025-11-07T14:31:00"
        ) from None
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(zone).replace(tzinfo=None)
        except (OverflowError, ValueError):  # e.g. 0001-01-01T00:00:00+01:00 is before year 1
            raise ProtocolError(
                BAD_MESSAGE,
                f"{path} {text!r} is outside the range of dates once converted to exchange time",
            ) from None
    return parsed


def number(obj: dict[str, Any], key: str, path: str) -> float:
    """A required finite number ``obj[key]``."""
    value = obj.get(key, _MISSING)
    if type(value) is float and value - value == 0.0:  # finite: the common case, at once
        return value  # type: ignore[no-any-return]
    if value is _MISSING:
        raise ProtocolError(BAD_MESSAGE, f"{path}.{key} is missing; expected a number")
    return _finite(value, f"{path}.{key}")


_MISSING = object()


def _optional_number(
    obj: dict[str, Any], key: str, path: str, positive: bool = True
) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is float and value - value == 0.0:  # finite: no name to build
        result: float = value
    else:
        result = _finite(value, f"{path}.{key}")
    if positive and result <= 0:
        raise ProtocolError(BAD_MESSAGE, f"{path}.{key} must be a price > 0, got {value!r}")
    if not positive and result < 0:
        raise ProtocolError(BAD_MESSAGE, f"{path}.{key} must be >= 0, got {value!r}")
    return result


def _finite(value: Any, name: str) -> float:
    kind = type(value)
    if kind is float:
        if math.isfinite(value):
            return value  # type: ignore[no-any-return]
    elif kind is int:
        try:
            result = float(value)
        except OverflowError:
            result = math.inf
        if math.isfinite(result):
            return result
    else:
        raise ProtocolError(BAD_MESSAGE, f"{name} must be a number, got {_describe(value)}")
    raise ProtocolError(BAD_MESSAGE, f"{name} must be a finite number, got {_describe(value)}")


def _identifier(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise ProtocolError(
            BAD_MESSAGE,
            f"field {key} must be a non-empty string of at most {MAX_ID_LENGTH} characters "
            f"(e.g. {'nt8-NQ-1min-A' if key == 'client' else 'NQ 12-25'}), got {_describe(value)}",
        )
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    if value is None:
        return "null (or nothing)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    kind = {
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "an object",
    }
    text = repr(value) if isinstance(value, (str, int, float)) else ""
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind.get(type(value), type(value).__name__)} {text}".rstrip()


# -- replies --------------------------------------------------------------------------


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
# The C encoder JSONEncoder.encode builds on every call, built once. No circular-reference
# markers: replies are trees this module builds, and a failed encode (a non-finite number)
# cannot leave stale markers behind for the next one.
_C_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)  # None without _json
_C_ENCODE = (
    None
    if _C_MAKE_ENCODER is None
    else _C_MAKE_ENCODER(
        None,
        _ENCODER.default,
        json.encoder.encode_basestring_ascii,
        None,
        _ENCODER.key_separator,
        _ENCODER.item_separator,
        False,
        False,
        False,
    )
)


def encode(reply: dict[str, Any]) -> bytes:
    """A reply as one compact UTF-8 JSON frame (what ``json.dumps(reply,
    separators=(",", ":"), allow_nan=False)`` gives); non-finite numbers are a bug
    (raises ValueError)."""
    if _C_ENCODE is None:
        return _ENCODER.encode(reply).encode()
    return "".join(_C_ENCODE(reply, 0)).encode()


def encode_decision(reply: dict[str, Any]) -> bytes:
    """A bar's decision reply, written by orjson (8x faster than :func:`encode`).

    Only for a reply whose numbers the caller has checked are finite: orjson writes
    ``NaN`` as ``null``. The values are those :func:`encode` writes; exponents have no
    leading zero (``1e-6``) and characters beyond ASCII are written as UTF-8, not
    ``\\u`` escapes. What orjson cannot write (a lone surrogate, an integer beyond 64
    bits) is written by :func:`encode`.
    """
    try:
        return orjson.dumps(reply)
    except orjson.JSONEncodeError:
        return encode(reply)


def error_reply(code: str, message: str, seq: int | None) -> bytes:
    """The protocol's error reply."""
    return encode(
        {
            "v": PROTOCOL_VERSION,
            "type": "error",
            "ok": False,
            "seq": seq,
            "error": {"code": code, "message": message},
        }
    )


def ok_reply(kind: str, seq: int | None, **fields: Any) -> dict[str, Any]:
    """A success reply's envelope followed by its fields (not yet encoded)."""
    return {"v": PROTOCOL_VERSION, "type": kind, "ok": True, "seq": seq, **fields}
