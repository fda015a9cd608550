"""The daemon reads bar requests with orjson and writes replies with it: what it reads and
the errors it gives must be exactly those of the standard library's json, which the
protocol was specified against."""

from __future__ import annotations

import json
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
from bridge_helpers import bar_message, tiny_bars
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import protocol
from bridge.policy import ObsNormalizer

BARS = tiny_bars()
VALID = bar_message(BARS, 200, seq=7, client="json-check")
PATHS = [
    ("v",),
    ("type",),
    ("seq",),
    ("client",),
    ("bar",),
    ("position",),
    *(("bar", k) for k in VALID["bar"]),
    *(("position", k) for k in VALID["position"]),
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@contextmanager
def standard_library_only():
    """``protocol.decode`` with its orjson path switched off: ``json.loads`` alone."""
    with mock.patch.object(protocol, "MAX_FAST_DECODE_BYTES", -1):
        yield


def outcome(raw: bytes) -> tuple[str, str]:
    """What decode gives, comparable across paths: the repr of the object (floats and
    ints as written, key order), or the error code and message."""
    try:
        return "object", repr(protocol.decode(raw))
    except protocol.ProtocolError as exc:
        return exc.code, exc.message


def assert_same_as_standard_library(raw: bytes) -> None:
    fast = outcome(raw)
    with standard_library_only():
        reference = outcome(raw)
    assert fast == reference


def with_value(path: tuple[str, ...], value: object) -> dict:
    message = json.loads(json.dumps(VALID))
    target = message
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return message


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(PATHS), value=json_values, compact=st.booleans())
def test_a_bar_with_any_field_value_decodes_as_json_loads_does(path, value, compact) -> None:
    separators = (",", ":") if compact else (", ", ": ")
    raw = json.dumps(with_value(path, value), separators=separators).encode()
    assert_same_as_standard_library(raw)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, 400), junk=st.binary(min_size=1, max_size=6))
def test_a_damaged_bar_is_refused_as_json_loads_would(position, junk) -> None:
    raw = json.dumps(VALID).encode()
    position = min(position, len(raw))
    assert_same_as_standard_library(raw[:position] + junk + raw[position:])


@pytest.mark.parametrize(
    ("path", "literal"),
    [
        (("seq",), "100000000000000000000000000001"),
        (("v",), "100000000000000000000000000001"),
        (("position", "side"), "-100000000000000000000000000001"),
        (("bar", "volume"), "100000000000000000000000000001"),
        (("bar", "close"), "1e400"),
        (("bar", "close"), "NaN"),
    ],
)
def test_integers_beyond_64_bits_and_non_finite_literals_keep_their_meaning(path, literal) -> None:
    marker = 123456.789
    raw = json.dumps(with_value(path, marker)).encode().replace(b"123456.789", literal.encode())
    assert_same_as_standard_library(raw)
    kind, _ = outcome(raw)
    assert kind == "object"
    if literal.lstrip("-").isdigit() and path[-1] != "volume":
        # the integer fields must stay integers: a float here would change the error
        value = protocol.decode(raw)
        for key in path:
            value = value[key]
        assert type(value) is int and value == int(literal)


def test_an_integer_field_beyond_64_bits_gets_the_standard_librarys_error() -> None:
    raw = json.dumps(with_value(("v",), 0)).encode().replace(b'"v": 0', b'"v": ' + b"9" * 30)
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.parse_envelope(protocol.decode(raw))
    assert caught.value.code == protocol.UNSUPPORTED_VERSION  # an int, not "v must be ..."


@pytest.mark.parametrize(
    "reply",
    [
        {"v": 1, "type": "bar", "ok": True, "probs": [1e-06, 0.25, 0.999999, 0.0], "s": "é"},
        {"v": 1, "type": "error", "ok": False, "seq": 2**63 - 1, "big": 2**80},
        {"v": 1, "type": "error", "ok": False, "message": "time '2025-01-05\ud80017:46'"},
    ],
)
def test_encode_writes_what_json_loads_reads_back(reply) -> None:
    frame = protocol.encode(reply)
    assert json.loads(frame) == reply
    assert b" " not in frame.replace(b"time '", b"")  # compact


def test_checked_normalisation_refuses_non_finite_observations_only() -> None:
    rng = np.random.default_rng(3)
    mean = rng.normal(size=228)
    std = np.sqrt(rng.uniform(0.5, 2.0, size=228) + 1e-8)
    normalizer = ObsNormalizer(mean, std, clip_obs=10.0)
    obs = rng.normal(size=228).astype(np.float32)
    np.testing.assert_array_equal(normalizer.checked(obs), normalizer(obs))
    huge = obs.copy()
    huge[5] = np.float32(3.0e38)  # finite, far beyond anything real: clipped, not refused
    assert normalizer.checked(huge) is not None
    for bad in (np.nan, np.inf, -np.inf):
        broken = obs.copy()
        broken[100] = bad
        assert normalizer.checked(broken) is None
    off = ObsNormalizer(mean, std, clip_obs=10.0, enabled=False)
    np.testing.assert_array_equal(off.checked(obs), obs)
    assert off.checked(broken) is None
