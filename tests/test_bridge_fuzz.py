"""Protocol fuzzing over a real socket: whatever arrives gets exactly one reply, a
protocol-shaped one, and a valid bar right after still gets its action."""

from __future__ import annotations

import itertools
import json

import pytest
from bridge_helpers import (
    Client,
    bar_message,
    field_paths,
    history_message,
    running_server,
    serve_config,
    tiny_bars,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import protocol
from env.config import WARMUP_BARS

pytest_plugins = ["bridge_helpers"]

BARS = tiny_bars()
CHECKER = "fuzz-checker"
NEXT_BAR = itertools.count(WARMUP_BARS)
UNIQUE_SEQ = itertools.count(10**6)
REPLY_KEYS = {"v", "type", "ok", "seq"}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
VALID = bar_message(BARS, 200, seq=1, client="fuzz-mutant")
PATHS = [*field_paths(VALID), ("debug",)]


@pytest.fixture(scope="module")
def endpoint(tiny_bundle, tiny_policy, tmp_path_factory):
    config = serve_config(tiny_bundle, tmp_path_factory.mktemp("fuzz"), max_message_bytes=65536)
    with running_server(config, tiny_policy) as server:
        checker = Client(server.endpoint)
        assert checker.ask(history_message(BARS, 0, WARMUP_BARS, client=CHECKER))["ready"]
        checker.close()
        yield server.endpoint


@pytest.fixture(scope="module")
def client(endpoint):
    c = Client(endpoint)
    yield c
    c.close()


def exchange(client: Client, payload: bytes) -> None:
    """One fuzz request and its reply, then a valid bar that must get an action."""
    reply = json.loads(client.raw(payload))
    assert isinstance(reply, dict) and set(reply) >= REPLY_KEYS and reply["v"] == 1
    if reply["ok"]:
        assert reply["type"] in protocol.REQUEST_TYPES
    else:
        assert reply["type"] == "error" and reply["error"]["code"] in protocol.ERROR_CODES
        assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    i = next(NEXT_BAR)
    check = client.ask(bar_message(BARS, i, seq=i, client=CHECKER))
    assert check["ok"] and check["warming_up"] is False and check["mask"][check["action"]] == 1


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_get_exactly_one_reply(client, payload) -> None:
    exchange(client, payload)


@FUZZ
@given(json_values)
def test_random_json_gets_exactly_one_reply(client, value) -> None:
    exchange(client, json.dumps(value).encode())


@FUZZ
@given(st.sampled_from(PATHS), json_values | st.just(KeyError))
def test_valid_request_with_one_field_broken_gets_exactly_one_reply(client, path, value) -> None:
    message = json.loads(json.dumps(VALID))
    target = message
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    exchange(client, json.dumps(message).encode())


@FUZZ
@given(st.sampled_from(PATHS), st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]))
def test_non_finite_literals_are_refused_naming_the_field(client, path, literal) -> None:
    message = json.loads(json.dumps(VALID))
    message["seq"] = next(UNIQUE_SEQ)  # not a retry of an earlier example
    target = message
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "__HOLE__"
    payload = json.dumps(message).replace('"__HOLE__"', literal).encode()
    reply = json.loads(client.raw(payload))
    assert reply["ok"] is False and reply["error"]["code"] == "bad_message"
    assert ".".join(path) in reply["error"]["message"]
    i = next(NEXT_BAR)
    assert client.ask(bar_message(BARS, i, seq=i, client=CHECKER))["ok"]
