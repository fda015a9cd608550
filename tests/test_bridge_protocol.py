"""Wire protocol v1 over real ZeroMQ sockets on random loopback ports: every message
type, every error code, warm-up, history overlap, retries, ordering, several clients."""

from __future__ import annotations

import json
import math
import socket
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import numpy as np
import pytest
import zmq
from bridge_helpers import (
    Client,
    CountingActor,
    FailingActor,
    StubActor,
    bar_message,
    history_message,
    running_server,
    serve_config,
    tiny_bars,
    with_actor,
)
from structlog.testing import capture_logs

from bridge import protocol
from env.config import ACTION_NAMES, FEATURE_VERSION, TOTAL_OBSERVATION_SIZE, WARMUP_BARS
from env.execution import bracket_prices, breakeven_stop, trail_distance
from env.features import StreamingFeatures

pytest_plugins = ["bridge_helpers"]  # the tiny_bundle and tiny_policy fixtures

BARS = tiny_bars()
LONG_FROM = 60  # the bar on whose open the test's long position was filled


@pytest.fixture
def daemon(tiny_bundle, tiny_policy, tmp_path):
    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        yield server


@pytest.fixture
def client(daemon):
    c = Client(daemon.endpoint)
    yield c
    c.close()


def warm_up(client: Client, name: str = "test-client", bars: int = WARMUP_BARS) -> None:
    reply = client.ask(history_message(BARS, 0, bars, client=name))
    assert reply["ok"] and reply["ready"] == (bars >= WARMUP_BARS)


def long_position(entry_bar: int = LONG_FROM) -> dict:
    entry = float(BARS.open[entry_bar])
    return {
        "side": 1,
        "quantity": 1,
        "entry_price": entry,
        "entry_time": str(BARS.time[entry_bar]),
        "sl_price": entry - 10.0,
        "tp_price": entry + 20.0,
        "trailing": False,
    }


def streamed(n: int) -> StreamingFeatures:
    """The env's streaming features over the first ``n`` bars (close and ATR of bar n-1)."""
    features = StreamingFeatures()
    for i in range(n):
        features.update(
            int(BARS.minute_of_day[i]),
            BARS.open[i],
            BARS.high[i],
            BARS.low[i],
            BARS.close[i],
            BARS.volume[i],
        )
    return features


# -- message types ---------------------------------------------------------------------


def test_hello_reply_describes_model_protocol_and_warmup(client, tiny_policy) -> None:
    reply = client.ask({"v": 1, "type": "hello", "client": "c", "instrument": "NQ 12-25", "seq": 7})
    assert reply["v"] == 1 and reply["type"] == "hello" and reply["ok"] is True
    assert reply["seq"] == 7 and reply["protocol"] == 1
    assert reply["model"] == {
        "version": tiny_policy.version,
        "sha256": tiny_policy.sha256,
        "obs_size": TOTAL_OBSERVATION_SIZE,
        "features": FEATURE_VERSION,
        "instrument": "NQ",
        "bar_period": {"type": "minute", "value": 1},
        "trained_tick_size": 0.25,
    }
    assert len(reply["model"]["sha256"]) == 64
    assert reply["actions"] == list(ACTION_NAMES)
    assert reply["warmup_bars"] == WARMUP_BARS


def test_ping_needs_no_client_and_reports_uptime(client, tiny_policy) -> None:
    reply = client.ask({"v": 1, "type": "ping"})
    assert reply["ok"] is True and reply["type"] == "ping" and reply["seq"] is None
    assert reply["uptime_s"] >= 0.0 and reply["model_version"] == tiny_policy.version


def test_bar_after_history_decides_under_the_mask(client, tiny_policy) -> None:
    warm_up(client)
    reply = client.ask(bar_message(BARS, WARMUP_BARS, seq=1))
    assert reply["ok"] and reply["type"] == "bar" and reply["seq"] == 1
    assert reply["time"] == str(BARS.time[WARMUP_BARS]) and reply["warming_up"] is False
    assert reply["mask"] == [1, 1, 1, 0, 0, 0]
    assert reply["mask"][reply["action"]] == 1 and reply["name"] == ACTION_NAMES[reply["action"]]
    assert len(reply["probs"]) == 6 and math.isclose(sum(reply["probs"]), 1.0, abs_tol=1e-5)
    assert reply["probs"][3:] == [0.0, 0.0, 0.0]
    assert reply["model_version"] == tiny_policy.version


def test_bars_during_warmup_hold_until_warmup_bars_are_known(client) -> None:
    replies = [client.ask(bar_message(BARS, i, seq=i)) for i in range(WARMUP_BARS)]
    for reply in replies[:-1]:
        assert reply["warming_up"] is True and reply["action"] == 0 and reply["orders"] == {}
        assert reply["probs"] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert replies[-1]["warming_up"] is False


def test_history_overlap_is_skipped_and_counted_out(client) -> None:
    first = client.ask(history_message(BARS, 0, 30))
    assert (first["accepted"], first["ready"]) == (30, False)
    overlap = client.ask(history_message(BARS, 20, 50))
    assert (overlap["accepted"], overlap["ready"]) == (20, True)
    again = client.ask(history_message(BARS, 0, 50))
    assert (again["accepted"], again["ready"]) == (0, True)


def test_position_message_updates_the_position_used_by_later_bars(client) -> None:
    warm_up(client, bars=LONG_FROM + 1)
    reply = client.ask(
        {
            "v": 1,
            "type": "position",
            "client": "test-client",
            "instrument": "NQ 12-25",
            "seq": 1,
            "position": long_position(),
        }
    )
    assert reply == {"v": 1, "type": "position", "ok": True, "seq": 1}
    message = bar_message(BARS, LONG_FROM + 1, seq=2)
    del message["position"]
    assert client.ask(message)["mask"] == [1, 1, 1, 1, 1, 1]


def test_unknown_keys_are_ignored(client) -> None:
    reply = client.ask({"v": 1, "type": "ping", "sent_at": "x", "extra": {"a": [1]}})
    assert reply["ok"] is True


def test_debug_returns_the_raw_and_normalised_observation(client, tiny_policy) -> None:
    warm_up(client)
    reply = client.ask(bar_message(BARS, WARMUP_BARS, seq=1, debug=True))
    obs = np.array(reply["debug"]["obs"], dtype=np.float32)
    normalized = np.array(reply["debug"]["obs_normalized"], dtype=np.float32)
    assert obs.shape == normalized.shape == (TOTAL_OBSERVATION_SIZE,)
    np.testing.assert_array_equal(normalized, tiny_policy.normalizer(obs))
    np.testing.assert_array_equal(obs[-8:], [0, 1, 0, 0, 0, 1, 0, 0])
    _, probs = tiny_policy.decide(normalized, reply["mask"])
    assert reply["probs"] == [round(p, 6) for p in probs]  # 6 decimals, the model's own


# -- retries and ordering ------------------------------------------------------------


def test_retry_with_same_seq_gets_byte_identical_reply_without_running_the_model(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    actor = CountingActor(tiny_policy.actor)
    with running_server(
        serve_config(tiny_bundle, tmp_path), with_actor(tiny_policy, actor)
    ) as server:
        client = Client(server.endpoint)
        warm_up(client)
        payload = json.dumps(bar_message(BARS, WARMUP_BARS, seq=5, debug=True)).encode()
        first = client.raw(payload)
        calls = actor.calls
        assert client.raw(payload) == first
        changed = json.loads(
            client.raw(json.dumps(bar_message(BARS, WARMUP_BARS + 1, seq=5)).encode())
        )
        assert changed["error"]["code"] == "out_of_order"  # never the cached decision
        assert changed["error"]["message"].startswith(
            "seq 5 was already used for a different request"
        )
        assert actor.calls == calls
        following = client.ask(bar_message(BARS, WARMUP_BARS + 1, seq=6))
        assert following["ok"] and following["seq"] == 6 and actor.calls == calls + 1
        client.close()


def test_request_of_another_type_with_the_last_seq_is_not_a_retry(client) -> None:
    warm_up(client)
    assert client.ask(bar_message(BARS, WARMUP_BARS, seq=1))["type"] == "bar"
    hello = {"v": 1, "type": "hello", "client": "test-client", "instrument": "NQ 12-25", "seq": 1}
    reply = client.ask(hello)  # e.g. a restarted strategy whose seq starts again at 1
    assert reply["type"] == "hello" and reply["bars_known"] == WARMUP_BARS + 1


@pytest.mark.parametrize("offset", [0, -1, -10])
def test_bar_not_after_the_last_bar_is_out_of_order(client, offset) -> None:
    warm_up(client, bars=WARMUP_BARS + 10)
    last = WARMUP_BARS + 9
    reply = client.ask(bar_message(BARS, last + offset, seq=3))
    assert reply["ok"] is False and reply["type"] == "error" and reply["seq"] == 3
    assert reply["error"]["code"] == "out_of_order"
    assert str(BARS.time[last + offset]) in reply["error"]["message"]


def test_old_seq_that_is_not_the_last_is_not_a_retry(client) -> None:
    warm_up(client)
    assert client.ask(bar_message(BARS, WARMUP_BARS, seq=1))["ok"]
    assert client.ask(bar_message(BARS, WARMUP_BARS + 1, seq=2))["ok"]
    reply = client.ask(bar_message(BARS, WARMUP_BARS, seq=1))
    assert reply["error"]["code"] == "out_of_order"


def test_states_are_kept_per_client_and_instrument(client) -> None:
    warm_up(client, name="a")
    reply = client.ask(bar_message(BARS, WARMUP_BARS, seq=1, client="b"))
    assert reply["warming_up"] is True  # b has no history
    other = bar_message(BARS, WARMUP_BARS, seq=2, client="a")
    other["instrument"] = "ES 12-25"
    assert client.ask(other)["warming_up"] is True
    assert client.ask(bar_message(BARS, WARMUP_BARS, seq=3, client="a"))["warming_up"] is False


# -- errors --------------------------------------------------------------------------

VALID_BAR = json.dumps(bar_message(BARS, 100, seq=9))


def mutate(path: str, value) -> bytes:
    message = json.loads(VALID_BAR)
    target = message
    *parents, key = path.split(".")
    for parent in parents:
        target = target[parent]
    if value is KeyError:
        del target[key]
    else:
        target[key] = value
    return json.dumps(message).encode()


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"{",
        b"\xff\xfe{}",
        b"[1, 2]",
        b'"text"',
        b"42",
        b"null",
        b"\xef\xbb\xbf{}",
    ],
)
def test_unparseable_or_non_object_requests_are_bad_json(client, payload) -> None:
    reply = json.loads(client.raw(payload))
    assert reply == {"v": 1, "type": "error", "ok": False, "seq": None, "error": reply["error"]}
    assert reply["error"]["code"] == "bad_json" and reply["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (mutate("v", KeyError), "v"),
        (mutate("v", "1"), "v"),
        (mutate("v", True), "v"),
        (mutate("type", KeyError), "type"),
        (mutate("type", 5), "type"),
        (mutate("client", KeyError), "client"),
        (mutate("client", ""), "client"),
        (mutate("instrument", 3), "instrument"),
        (mutate("seq", KeyError), "seq"),
        (mutate("seq", -1), "seq"),
        (mutate("seq", "9"), "seq"),
        (mutate("seq", 1.5), "seq"),
        (mutate("bar", KeyError), "bar"),
        (mutate("bar", [1, 2]), "bar"),
        (mutate("bar.time", "yesterday"), "bar.time"),
        (mutate("bar.time", 20251107), "bar.time"),
        # an offset that converts to a date outside Python's range: no internal error
        (mutate("bar.time", "0001-01-01T00:00:00+01:00"), "bar.time"),
        (mutate("bar.time", "9999-12-31T23:59:00-01:00"), "bar.time"),
        (mutate("bar.open", KeyError), "bar.open"),
        (mutate("bar.close", "21000"), "bar.close"),
        (mutate("bar.close", True), "bar.close"),
        (mutate("bar.close", -5.0), "close"),
        (mutate("bar.high", 1.0), "high"),
        (mutate("bar.low", 1e9), "low"),
        (mutate("bar.volume", -1), "volume"),
        (mutate("bar.volume", 10**400), "bar.volume"),
        (mutate("position", 5), "position"),
        (mutate("position.side", 2), "position.side"),
        (mutate("position.side", True), "position.side"),
        (mutate("position.side", 1), "position.entry_price"),
        (mutate("position.trailing", "no"), "position.trailing"),
        (mutate("position.entry_time", "0001-01-01T00:00:00+05:00"), "position.entry_time"),
        (mutate("position.quantity", -1), "position.quantity"),
        (mutate("debug", "yes"), "debug"),
        (VALID_BAR.replace('"close": ', '"close": NaN, "x": ').encode(), "bar.close"),
        (VALID_BAR.replace('"open": ', '"open": Infinity, "x": ').encode(), "bar.open"),
        (VALID_BAR.replace('"volume": ', '"volume": -Infinity, "x": ').encode(), "bar.volume"),
        (b'{"v": 1, "type": "history", "client": "c", "instrument": "i", "bars": {}}', "bars"),
        (
            b'{"v": 1, "type": "history", "client": "c", "instrument": "i", "bars": [{"time": 1}]}',
            "bars[0].time",
        ),
        (
            b'{"v": 1, "type": "history", "client": "c", "instrument": "i", '
            b'"bars": [{"time": "0001-01-01T00:00:00+01:00"}]}',
            "bars[0].time",
        ),
    ],
)
def test_invalid_fields_are_bad_message_naming_the_field(client, payload, field) -> None:
    reply = json.loads(client.raw(payload))
    assert reply["ok"] is False and reply["type"] == "error"
    assert reply["error"]["code"] == "bad_message"
    assert field in reply["error"]["message"]


def test_error_replies_echo_a_valid_seq(client) -> None:
    reply = json.loads(client.raw(mutate("bar.close", None)))
    assert reply["seq"] == 9 and reply["error"]["code"] == "bad_message"


def test_other_protocol_version_is_unsupported(client) -> None:
    reply = json.loads(client.raw(mutate("v", 2)))
    assert reply["error"]["code"] == "unsupported_version" and reply["seq"] == 9


def test_unknown_message_type_is_refused(client) -> None:
    reply = json.loads(client.raw(mutate("type", "order")))
    assert reply["error"]["code"] == "unknown_type" and "order" in reply["error"]["message"]


def test_request_over_the_size_limit_is_too_large_and_the_daemon_keeps_serving(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    config = serve_config(tiny_bundle, tmp_path, max_message_bytes=4096)
    with running_server(config, tiny_policy) as server:
        client = Client(server.endpoint)
        reply = json.loads(client.raw(b'{"v": 1, "type": "ping", "pad": "' + b"x" * 5000 + b'"}'))
        assert reply["error"]["code"] == "too_large" and "4096" in reply["error"]["message"]
        huge = Client(server.endpoint)  # beyond ZMQ_MAXMSGSIZE: the peer is dropped, no reply
        huge.socket.send(b"x" * (16 * 4096 + 1))
        assert not huge.socket.poll(300, zmq.POLLIN)
        huge.close()
        assert client.ask({"v": 1, "type": "ping"})["ok"] is True
        client.close()


def test_model_exception_is_an_internal_error_reply_and_is_logged(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    config = serve_config(tiny_bundle, tmp_path)
    policy = with_actor(tiny_policy, FailingActor())
    with capture_logs() as logs, running_server(config, policy) as server:
        client = Client(server.endpoint)
        warm_up(client)
        reply = client.ask(bar_message(BARS, WARMUP_BARS, seq=4))
        assert reply["ok"] is False and reply["seq"] == 4
        assert reply["error"]["code"] == "internal"
        assert "simulated" not in reply["error"]["message"]  # details go to the log
        assert client.ask({"v": 1, "type": "ping"})["ok"] is True
        client.close()
    failures = [e for e in logs if e["event"] == "internal_error"]
    assert failures and failures[0]["seq"] == 4
    assert "simulated model failure" in failures[0]["error"]


def test_multipart_request_gets_one_error_reply(client) -> None:
    client.socket.send_multipart([b'{"v": 1,', b' "type": "ping"}'])
    assert client.socket.poll(5000, zmq.POLLIN)
    reply = json.loads(client.socket.recv())
    assert reply["error"]["code"] == "bad_json"


# -- orders and the guard ------------------------------------------------------------


@pytest.mark.parametrize(
    ("favoured", "position", "expected"),
    [
        ("BUY", None, "BUY"),
        ("SELL", None, "SELL"),
        ("MOVE_TO_BE", None, None),  # masked while flat: the best valid action instead
        ("MOVE_TO_BE", "long", "MOVE_TO_BE"),
        ("ENABLE_TRAIL", "long", "ENABLE_TRAIL"),
        ("DISABLE_TRAIL", "long", "DISABLE_TRAIL"),
        ("HOLD", "long", "HOLD"),
    ],
)
def test_orders_are_priced_by_the_env_execution_functions(
    tiny_bundle, tiny_policy, tmp_path, favoured, position, expected
) -> None:
    logits = [0.0] * 6
    logits[ACTION_NAMES.index(favoured)] = 5.0
    logits[0] = 1.0  # HOLD is the runner-up
    decision_bar = LONG_FROM + 5
    policy = with_actor(tiny_policy, StubActor(logits))
    with running_server(serve_config(tiny_bundle, tmp_path), policy) as server:
        client = Client(server.endpoint)
        warm_up(client, bars=decision_bar)
        pos = long_position() if position else None
        reply = client.ask(bar_message(BARS, decision_bar, seq=1, position=pos))
        client.close()
    expected = expected or "HOLD"
    assert reply["name"] == expected and reply["action"] == ACTION_NAMES.index(expected)
    assert reply["mask"][reply["action"]] == 1
    features = streamed(decision_bar + 1)
    config = tiny_policy.env_config
    if expected in ("BUY", "SELL"):
        stop, target = bracket_prices(
            1 if expected == "BUY" else -1,
            features.close,
            features.atr,
            config.instrument,
            config.execution,
        )
        assert reply["orders"] == {"entry": "market", "stop_price": stop, "target_price": target}
    elif expected == "MOVE_TO_BE":
        stop = breakeven_stop(
            1, pos["entry_price"], pos["sl_price"], features.close, config.instrument.tick_size
        )
        assert reply["orders"] == {"stop_price": stop}
    elif expected == "ENABLE_TRAIL":
        distance = trail_distance(features.atr, config.instrument, config.execution)
        assert reply["orders"] == {"trail_points": distance}
    elif expected == "DISABLE_TRAIL":
        assert reply["orders"] == {"stop_price": pos["sl_price"]}
    else:
        assert reply["orders"] == {}


@pytest.mark.parametrize("entry", ["BUY", "SELL"])
def test_entry_chosen_while_in_a_position_is_never_sent(
    tiny_bundle, tiny_policy, tmp_path, entry
) -> None:
    logits = [0.0] * 6
    logits[ACTION_NAMES.index(entry)] = 5.0
    policy = with_actor(tiny_policy, StubActor(logits))
    with (
        capture_logs() as logs,
        running_server(serve_config(tiny_bundle, tmp_path), policy) as server,
    ):
        client = Client(server.endpoint)
        warm_up(client, bars=LONG_FROM + 1)
        reply = client.ask(bar_message(BARS, LONG_FROM + 1, seq=1, position=long_position()))
        client.close()
    assert reply["action"] == 0 and reply["name"] == "HOLD" and reply["orders"] == {}
    assert reply["guarded"] is True and reply["mask"] == [1, 1, 1, 1, 1, 1]
    guarded = [e for e in logs if e["event"] == "guarded"]
    # the wire's integer and the name, as risk_refused writes them
    assert guarded and guarded[0]["model_action"] == ACTION_NAMES.index(entry)
    assert guarded[0]["model_action_name"] == entry


# -- time handling -------------------------------------------------------------------


@pytest.mark.parametrize(
    "convert",
    [
        lambda t: (t + timedelta(hours=6)).isoformat() + "Z",  # January: Chicago is UTC-6
        lambda t: (t + timedelta(hours=7)).isoformat() + "+01:00",
        lambda t: t.isoformat() + "-06:00",
    ],
)
def test_times_with_z_or_offset_are_converted_to_exchange_time(client, convert) -> None:
    def run(name: str, to_text) -> list[float]:
        for i in range(WARMUP_BARS + 1):
            message = bar_message(BARS, i, seq=i, client=name, debug=True)
            message["bar"]["time"] = to_text(BARS.time[i].astype("datetime64[s]").item())
            reply = client.ask(message)
            assert reply["ok"], reply
        return reply["debug"]["obs"]

    naive = run("naive", lambda t: t.isoformat())
    assert run("aware", convert) == naive


def test_bars_in_position_count_bars_after_the_entry_time(client) -> None:
    warm_up(client, bars=LONG_FROM + 1)
    seen = []
    for k, i in enumerate(range(LONG_FROM + 1, LONG_FROM + 4)):
        reply = client.ask(bar_message(BARS, i, seq=k, position=long_position(), debug=True))
        seen.append(reply["debug"]["obs"][224])
    assert seen == [1.0, 2.0, 3.0]


# -- several clients and dead clients ------------------------------------------------


def test_several_clients_at_once_each_get_their_own_replies(daemon) -> None:
    results: dict[str, list[dict]] = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            client = Client(daemon.endpoint, zmq.Context.instance())
            client.ask(history_message(BARS, 0, WARMUP_BARS, client=name))
            results[name] = [
                client.ask(bar_message(BARS, i, seq=i, client=name))
                for i in range(WARMUP_BARS, WARMUP_BARS + 40)
            ]
            client.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"chart-{k}",)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    replies = list(results.values())
    assert len(replies) == 4
    for one in replies:
        assert [r["seq"] for r in one] == list(range(WARMUP_BARS, WARMUP_BARS + 40))
        assert all(r["ok"] and not r["warming_up"] for r in one)
    actions = [[(r["action"], r["probs"]) for r in one] for one in replies]
    assert all(a == actions[0] for a in actions)  # same bars, same model, separate state


def test_a_client_dying_mid_request_does_not_block_the_others(daemon) -> None:
    dying = Client(daemon.endpoint)
    dying.socket.send(json.dumps(bar_message(BARS, 0, seq=1, client="dying")).encode())
    dying.close()  # gone before the reply: the REP socket drops it
    host, port = urlsplit(daemon.endpoint).hostname, urlsplit(daemon.endpoint).port
    with socket.create_connection((host, port), timeout=2) as raw:  # not even ZMTP
        raw.sendall(b"\x00garbage that is not a zmtp greeting\xff" * 4)
    survivor = Client(daemon.endpoint)
    for k in range(3):
        assert survivor.ask({"v": 1, "type": "ping", "seq": k})["seq"] == k
    survivor.close()


def test_error_codes_are_exactly_the_protocols() -> None:
    assert protocol.ERROR_CODES == (
        "bad_json",
        "bad_message",
        "unsupported_version",
        "unknown_type",
        "out_of_order",
        "too_large",
        "internal",
    )
