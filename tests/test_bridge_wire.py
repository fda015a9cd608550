"""What the daemon trusts from the wire: bar times against its clock, retries, the
traded contract's tick and the chart's bar period (PROTOCOL v1.1)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from bridge_helpers import (
    Client,
    StubActor,
    bar_message,
    history_message,
    running_server,
    serve_config,
    tiny_bars,
    with_actor,
)

from bridge.dispatch import _duration
from env.config import WARMUP_BARS

pytest_plugins = ["bridge_helpers"]

DATA = Path(__file__).resolve().parent / "data"
BARS = tiny_bars()
BUY_LOGITS = [0.0, 5.0, 0.0, 0.0, 0.0, 0.0]


@pytest.fixture
def buyer(tiny_bundle, tiny_policy, tmp_path):
    """A daemon whose model always wants to buy (so every flat bar is priced)."""
    policy = with_actor(tiny_policy, StubActor(BUY_LOGITS))
    with running_server(serve_config(tiny_bundle, tmp_path), policy) as server:
        client = Client(server.endpoint)
        yield client
        client.close()


def hello(client: Client, name: str, instrument: str, seq: int = 0, **extra) -> dict:
    message = {"v": 1, "type": "hello", "client": name, "instrument": instrument, "seq": seq}
    return client.ask({**message, **extra})


def scaled(i: int, factor: float, instrument: str, client: str, seq: int) -> dict:
    """Bar ``i`` of the test bars with prices times ``factor`` (another contract's scale)."""
    message = bar_message(BARS, i, seq, client=client)
    message["instrument"] = instrument
    for key in ("open", "high", "low", "close"):
        message["bar"][key] = getattr(BARS, key)[i].item() * factor
    return message


def on_grid(price: float, tick: float) -> bool:
    return math.isclose(price / tick, round(price / tick), abs_tol=1e-6)


# -- clock -----------------------------------------------------------------------------


def test_bar_from_the_future_is_refused_and_the_next_real_bar_still_decides(buyer) -> None:
    future = json.loads((DATA / "future_bar.jsonl").read_text().splitlines()[0])
    name = future["client"]
    assert buyer.ask(history_message(BARS, 0, WARMUP_BARS, client=name))["ready"]
    reply = buyer.ask(future)
    assert reply["ok"] is False and reply["error"]["code"] == "bad_message"
    message = reply["error"]["message"]
    assert "ahead of the daemon's clock" in message
    # 2099 from the 2020s, readable: not "2.633e+04 days"
    match = re.search(r"2099-01-01T00:00:00 is ([\d,]+) days \(about (\d+) years\) ahead", message)
    assert match, message
    days, years = int(match.group(1).replace(",", "")), int(match.group(2))
    assert days > 730 and abs(days / 365.25 - years) < 1
    following = buyer.ask(bar_message(BARS, WARMUP_BARS, future["seq"] + 1, client=name))
    assert following["ok"] and following["warming_up"] is False
    assert following["time"] == str(BARS.time[WARMUP_BARS])


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.0004, "0.0004 s"),
        (90, "90 s"),
        (750, "12.5 min"),
        (100_000, "27.78 h"),
        (200_000, "2.31 days"),
        (412 * 86400, "412 days"),
        (26_330 * 86400, "26,330 days (about 72 years)"),
        (-3 * 86400, "3 days"),
    ],
)
def test_durations_in_messages_read_as_people_write_them(seconds: float, shown: str) -> None:
    assert _duration(seconds) == shown


def test_history_with_a_future_bar_is_refused_whole(buyer) -> None:
    message = history_message(BARS, 0, 10)
    message["bars"][-1]["time"] = "2099-01-01T00:00:00Z"
    reply = buyer.ask(message)
    assert reply["error"]["code"] == "bad_message" and "bars[9].time" in reply["error"]["message"]
    assert buyer.ask(history_message(BARS, 0, WARMUP_BARS))["accepted"] == WARMUP_BARS


# -- retries ---------------------------------------------------------------------------


def test_retry_cache_is_kept_per_instrument(buyer) -> None:
    for instrument in ("NQ 12-25", "MNQ 12-25"):
        message = history_message(BARS, 0, WARMUP_BARS, client="two")
        message["instrument"] = instrument
        assert buyer.ask(message)["ready"]
    nq = bar_message(BARS, WARMUP_BARS, 5, client="two")
    mnq = bar_message(BARS, WARMUP_BARS + 1, 5, client="two")  # its own seq counter
    mnq["instrument"] = "MNQ 12-25"
    first = buyer.raw(json.dumps(nq).encode())
    other = json.loads(buyer.raw(json.dumps(mnq).encode()))
    assert other["ok"] and other["time"] == str(BARS.time[WARMUP_BARS + 1])
    assert buyer.raw(json.dumps(nq).encode()) == first  # a true retry of the NQ request


def test_same_seq_with_another_body_is_out_of_order(buyer) -> None:
    assert buyer.ask(history_message(BARS, 0, WARMUP_BARS))["ready"]
    assert buyer.ask(bar_message(BARS, WARMUP_BARS, 7))["ok"]
    position = bar_message(BARS, WARMUP_BARS, 7)
    reply = buyer.ask({**position, "type": "position"})
    assert reply["error"]["code"] == "out_of_order"
    assert reply["error"]["message"].startswith("seq 7 was already used for a different request")


# -- the traded contract's tick --------------------------------------------------------


def test_orders_are_priced_on_the_tick_hello_gives(buyer) -> None:
    spec = {"tick_size": 0.1, "point_value": 100.0, "currency": "USD"}  # e.g. gold
    assert hello(buyer, "gc", "GC 02-26", instrument_spec=spec)["ok"]
    history = history_message(BARS, 0, WARMUP_BARS, client="gc")
    history["instrument"] = "GC 02-26"
    assert buyer.ask(history)["ready"]
    reply = buyer.ask(scaled(WARMUP_BARS, 0.125, "GC 02-26", "gc", 1))
    assert reply["name"] == "BUY"
    close = BARS.close[WARMUP_BARS].item() * 0.125
    stop, target = reply["orders"]["stop_price"], reply["orders"]["target_price"]
    assert on_grid(stop, 0.1) and on_grid(target, 0.1) and stop < close < target


def test_unknown_instrument_without_a_spec_is_refused(buyer) -> None:
    message = bar_message(BARS, 0, 1, client="x")
    message["instrument"] = "ZZZ 03-26"
    reply = buyer.ask(message)
    assert reply["error"]["code"] == "bad_message"
    assert "instrument_spec" in reply["error"]["message"]


def test_model_of_another_price_scale_is_refused_unless_allowed(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    spec = {"tick_size": 0.00005, "point_value": 125000.0}
    policy = with_actor(tiny_policy, StubActor(BUY_LOGITS))
    with running_server(serve_config(tiny_bundle, tmp_path), policy) as server:
        client = Client(server.endpoint)
        reply = hello(client, "fx", "6E 03-26", instrument_spec=spec)
        assert reply["error"]["code"] == "bad_message"
        assert "NQ" in reply["error"]["message"] and "0.25" in reply["error"]["message"]
        client.close()
    config = serve_config(tiny_bundle, tmp_path, allow_other_scale=True)
    with running_server(config, policy) as server:
        client = Client(server.endpoint)
        assert hello(client, "fx", "6E 03-26", instrument_spec=spec)["ok"]
        factor = 1.08 / BARS.close[0].item()
        history = history_message(BARS, 0, WARMUP_BARS, client="fx")
        history["instrument"] = "6E 03-26"
        for bar in history["bars"]:
            for key in ("open", "high", "low", "close"):
                bar[key] *= factor
        assert client.ask(history)["ready"]
        reply = client.ask(scaled(WARMUP_BARS, factor, "6E 03-26", "fx", 1))
        close = BARS.close[WARMUP_BARS].item() * factor
        stop, target = reply["orders"]["stop_price"], reply["orders"]["target_price"]
        assert on_grid(stop, 0.00005) and on_grid(target, 0.00005)
        assert stop < close < target and target - stop < 0.05  # pips, not NQ points
        client.close()


# -- bar period ------------------------------------------------------------------------


def test_hello_with_another_bar_period_is_refused(buyer) -> None:
    reply = hello(buyer, "c5", "NQ 12-25", bar_period={"type": "Minute", "value": 5})
    assert reply["error"]["code"] == "bad_message"
    assert "1-minute" in reply["error"]["message"] and "5-minute" in reply["error"]["message"]
    reply = hello(buyer, "c1", "NQ 12-25", bar_period={"type": "minute", "value": 1})
    assert reply["ok"] and reply["model"]["bar_period"] == {"type": "minute", "value": 1}


def test_five_minute_bars_on_a_one_minute_model_are_refused(buyer) -> None:
    replies = []
    for n, i in enumerate(range(0, 5 * 6, 5)):  # every fifth 1-minute bar: 5 minutes apart
        replies.append(buyer.ask(bar_message(BARS, i, n + 1, client="five")))
    assert all(r["ok"] for r in replies[:3])
    refused = replies[3]
    assert refused["error"]["code"] == "bad_message"
    assert "5 min apart" in refused["error"]["message"]
    assert "1-minute" in refused["error"]["message"]


def test_bars_closer_than_the_period_are_refused(buyer) -> None:
    first = bar_message(BARS, 10, 1, client="fast")
    assert buyer.ask(first)["ok"]
    second = bar_message(BARS, 11, 2, client="fast")
    second["bar"]["time"] = str(BARS.time[10])[:-2] + "30"
    reply = buyer.ask(second)
    assert reply["error"]["code"] == "bad_message" and "30 s after" in reply["error"]["message"]


def test_minute_bars_on_a_daily_model_are_refused_and_an_early_close_is_not(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    """A chart that sends no bar period in hello is caught by the spacing: 1-minute bars
    are refused on a daily model; a session stamped at an early close (hours short of a
    day after the previous one) is a daily bar."""
    import dataclasses

    card = {**tiny_policy.card, "bar_period": {"type": "day", "value": 1}}
    daily = with_actor(dataclasses.replace(tiny_policy, card=card), StubActor(BUY_LOGITS))
    with running_server(serve_config(tiny_bundle, tmp_path), daily) as server:
        client = Client(server.endpoint)
        day = bar_message(BARS, 10, 1, client="daily")
        day["bar"]["time"] = "2025-01-02T16:00:00"
        assert client.ask(day)["ok"]
        early = bar_message(BARS, 11, 2, client="daily")
        early["bar"]["time"] = "2025-01-03T12:15:00"  # 20.25 h later: an early close
        assert client.ask(early)["ok"]
        minute = bar_message(BARS, 12, 3, client="daily")
        minute["bar"]["time"] = "2025-01-03T12:16:00"
        reply = client.ask(minute)
        client.close()
    assert reply["error"]["code"] == "bad_message"
    assert "60 s after the previous one" in reply["error"]["message"]
    assert "1-day" in reply["error"]["message"]


def test_session_gaps_are_not_a_period_mismatch(buyer) -> None:
    times = [0, 100, 200, 300, 301, 302]  # gaps of 100 minutes (a halt), then 1 minute
    replies = [buyer.ask(bar_message(BARS, i, n + 1, client="gap")) for n, i in enumerate(times)]
    assert all(r["ok"] for r in replies)
