"""The bar request's fast reader (``protocol.read_bar_request``, msgspec) against the
general path (``decode`` + ``parse_envelope`` + ``parse_bar_request``): whatever the fast
reader accepts, the general path accepts with the same result, and the daemon's replies
are byte for byte those of a daemon that reads every request the general way."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bridge_helpers import bar_message, field_paths, history_message, tiny_bars
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import protocol
from bridge.config import exchange_zone
from bridge.dispatch import Dispatcher
from bridge.replay import bar_object
from env.config import WARMUP_BARS

pytest_plugins = ["bridge_helpers"]

ZONE = exchange_zone("America/New_York")
BARS = tiny_bars()
FLAT = bar_message(BARS, 200, seq=7)
LONG = bar_message(
    BARS,
    200,
    seq=7,
    position={
        "side": 1,
        "quantity": 2,
        "entry_price": float(BARS.close[198]),
        "entry_time": str(BARS.time[198]),
        "sl_price": float(BARS.close[198]) - 10,
        "tp_price": float(BARS.close[198]) + 20,
        "trailing": True,
        "realized_pnl": -125.5,
    },
)
SHORT = {**LONG, "position": {**LONG["position"], "side": -1, "trailing": False}}
FIELDS = field_paths({**LONG, "debug": False, "realized_pnl": 0.0})
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            0,
            -1,
            1,
            2**63 - 1,
            2**63,
            1.0,
            "",
            "x" * 129,
            "2025-01-06T10:00:00Z",
            "2025-01-06T10:00:00-05:00",
            "2025-01-06 10:00:00",
            "2025-13-06T10:00:00",
            "bar",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children)
    ),
    max_leaves=8,
)


def general(raw: bytes) -> protocol.BarRequest | None:
    """The general path's reading of a bar request, or None where it refuses it."""
    try:
        obj = protocol.decode(raw)
        envelope = protocol.parse_envelope(obj)
        if envelope.type != "bar":
            return None
        return protocol.parse_bar_request(obj, envelope, ZONE)
    except protocol.ProtocolError:
        return None


def mutated(message: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """``message`` with the field at ``path`` set to ``value`` (removed for KeyError)."""
    message = json.loads(json.dumps(message))
    target = message
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            return message
        target = target[key]
    if value is KeyError:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return message


@pytest.mark.parametrize(
    "message",
    [
        FLAT,
        LONG,
        SHORT,
        {**FLAT, "debug": True, "realized_pnl": 40},
        {**FLAT, "position": None},
        {key: value for key, value in FLAT.items() if key != "position"},
        {**FLAT, "bar": {**FLAT["bar"], "time": "2025-01-06T15:00:00Z"}},
        {**FLAT, "bar": {**FLAT["bar"], "time": "2025-01-06T10:00:00-05:00", "volume": 500}},
        {**FLAT, "future_field": {"any": [1, 2]}, "position": {"side": 0}},
    ],
    ids=[
        "flat",
        "long",
        "short",
        "debug-pnl",
        "null-position",
        "no-position",
        "utc",
        "offset",
        "unknown-keys",
    ],
)
def test_the_requests_a_strategy_sends_take_the_fast_path_with_the_general_result(
    message,
) -> None:
    raw = json.dumps(message).encode()
    fast = protocol.read_bar_request(raw, ZONE)
    assert fast is not None, "a valid bar request of the usual shape must be read fast"
    assert fast == general(raw)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([FLAT, LONG, SHORT]),
    st.lists(st.tuples(st.sampled_from(FIELDS), json_values | st.just(KeyError)), max_size=3),
)
def test_what_the_fast_reader_accepts_the_general_path_accepts_alike(base, changes) -> None:
    message = base
    for path, value in changes:
        message = mutated(message, path, value)
    raw = json.dumps(message).encode()
    fast = protocol.read_bar_request(raw, ZONE)
    if fast is not None:
        assert fast == general(raw)


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(FLAT).replace('"volume": ', '"volume": NaN, "x": ').encode(),
        json.dumps(FLAT).replace('"seq": 7', '"seq": 7, "seq": 8').encode(),
        json.dumps(FLAT).replace('"seq": 7', '"seq": 99999999999999999999').encode(),
        json.dumps(FLAT).replace('"open": ', '"open": 1e999, "x": ').encode(),
        json.dumps(FLAT).replace('"client": "test-client"', '"client": "\\ud800"').encode(),
        json.dumps(FLAT).encode() + b" x",
        b"\xef\xbb\xbf" + json.dumps(FLAT).encode(),
        json.dumps(FLAT).replace('"test-client"', '"t\xe9st"').encode("latin-1"),
        json.dumps(FLAT).encode()[:-1] + b', "note": "\xff"}',
        json.dumps(FLAT).encode()[:-1] + b', "\xff": 1}',
        json.dumps(FLAT).encode()[:-1] + b', "note": "\xed\xa0\x80"}',
        json.dumps(FLAT).encode()[:-1] + b', "note": "\xc0\xaf"}',
        json.dumps(FLAT).encode()[:-1] + b', "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        json.dumps(FLAT).encode()[:-1] + b', "x": ' + b"[" * 990 + b"]" * 990 + b"}",
    ],
    ids=[
        "nan",
        "repeated-key",
        "huge-seq",
        "overflow",
        "lone-surrogate",
        "trailing",
        "bom",
        "latin-1",
        "unknown-value-not-utf8",
        "unknown-key-not-utf8",
        "encoded-surrogate",
        "overlong",
        "deep-5000",
        "deep-990",
    ],
)
def test_literals_json_reads_differently_agree_or_go_the_general_way(raw) -> None:
    fast = protocol.read_bar_request(raw, ZONE)
    assert fast is None or fast == general(raw)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([FLAT, LONG]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=3),
    st.binary(min_size=0, max_size=6) | st.sampled_from([b"\xff", b"\xc0\xaf", b"\\u", b"["]),
)
def test_bytes_spliced_into_a_request_never_make_the_fast_reader_disagree(
    base, where, cut, splice
) -> None:
    """Bytes of any kind spliced in anywhere (inside strings, keys, numbers, between
    tokens): the fast reader refuses or agrees with the general path."""
    raw = json.dumps({**base, "note": "n"}).encode()
    at = where % (len(raw) + 1)
    raw = raw[:at] + splice + raw[at + cut :]
    fast = protocol.read_bar_request(raw, ZONE)
    assert fast is None or fast == general(raw)


def test_a_request_longer_than_a_bar_request_is_left_to_the_general_path() -> None:
    """A history is never read twice; a valid bar request padded past the limit is
    still accepted, the general way."""
    raw = json.dumps({**FLAT, "note": "x" * protocol.MAX_FAST_DECODE_BYTES}).encode()
    assert protocol.read_bar_request(raw, ZONE) is None and general(raw) is not None
    assert protocol.read_bar_request(json.dumps(FLAT).encode(), ZONE) is not None


def dispatcher(policy, fast: bool) -> Dispatcher:
    d = Dispatcher(policy, exchange_tz=ZONE, max_message_bytes=1 << 20, max_sessions=8)
    d.fast_bars = fast
    return d


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_the_daemon_replies_byte_for_byte_as_the_general_path(tiny_policy, data) -> None:
    """A stream of bars with broken fields, retries, resends with other spacing and
    reused seqs: both daemons give the same bytes, and the fast one took its path."""
    fast, slow = dispatcher(tiny_policy, True), dispatcher(tiny_policy, False)
    history = json.dumps(history_message(BARS, 0, WARMUP_BARS, seq=1)).encode()
    assert fast.handle(history).reply == slow.handle(history).reply
    fast_reads = 0
    seq = 2
    previous = b""
    for i in range(WARMUP_BARS, WARMUP_BARS + 12):
        message = bar_message(BARS, i, seq=seq)
        kind = data.draw(st.sampled_from(["plain", "broken", "retry", "respaced", "reused"]))
        if kind == "broken":
            path = data.draw(st.sampled_from(FIELDS))
            message = mutated(message, path, data.draw(json_values | st.just(KeyError)))
        raw = json.dumps(message).encode()
        if kind == "retry" and previous:
            raw = previous
        elif kind == "respaced" and previous:
            raw = json.dumps(json.loads(previous), indent=1, sort_keys=True).encode()
        elif kind == "reused" and previous:
            raw = json.dumps({**json.loads(previous), "bar": bar_object(BARS, i)}).encode()
        fast_reads += protocol.read_bar_request(raw, ZONE) is not None
        a, b = fast.handle(raw), slow.handle(raw)
        assert a.reply == b.reply, raw
        assert (a.ok, a.retry, a.error_code, a.seq, a.parsed) == (
            b.ok,
            b.retry,
            b.error_code,
            b.seq,
            b.parsed,
        )
        if a.ok and not a.retry:
            previous, seq = raw, seq + 1
    assert fast_reads > 0


def test_a_resent_bar_with_other_spacing_is_a_retry_and_another_body_is_refused(
    tiny_policy,
) -> None:
    d = dispatcher(tiny_policy, True)
    d.handle(json.dumps(history_message(BARS, 0, WARMUP_BARS, seq=1)).encode())
    message = bar_message(BARS, WARMUP_BARS, seq=2)
    first = d.handle(json.dumps(message).encode())
    again = d.handle(json.dumps(message, indent=2, sort_keys=True).encode())
    assert first.ok and again.retry and again.reply == first.reply
    other = d.handle(json.dumps(bar_message(BARS, WARMUP_BARS + 1, seq=2)).encode())
    assert json.loads(other.reply)["error"]["code"] == protocol.OUT_OF_ORDER
    assert json.loads(other.reply)["seq"] == 2
