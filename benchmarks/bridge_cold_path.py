"""Where the daemon's time goes on a bar that follows a pause: each step of the bar path,
back to back (hot) and alone after a sleep (cold), in this process.

A live bar arrives a minute after the last one, so the daemon always serves it "cold":
the CPU caches and branch predictors hold other work. `bridge_latency.py` measures the
whole request; this script splits the daemon's part into its steps (reading the request,
clock, session calendar, observation, normalisation, actor, journal line) and times each
one twice (the daemon reads a bar request with ``read_bar_request``; the general path's
steps, taken by any other request, are timed too):

- hot: the best mean of repeated back-to-back calls (``timeit``);
- cold: the median of single calls, each after ``--pause-ms`` of sleep.

Last, whole bars after the same pause, split into those that change the rails' state (an
entry or a closed trade, whose log line the daemon writes after the reply) and the others.

The sum of the cold column overstates a whole cold request (steps share interpreter and
numpy code that the first step warms for the rest); its use is to rank the steps by what
they cost after a pause, which is what a shorter bar path has to cut. The bare echo's
``json.loads`` + ``json.dumps`` of the same request is timed alike for scale.

    python benchmarks/bridge_cold_path.py [--bundle DIR] [--pause-ms 5] [--calls 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bridge_latency as latency  # noqa: E402

from bridge import protocol  # noqa: E402
from bridge.config import DEFAULT_BUNDLE, ModelSource, ServeConfig  # noqa: E402
from bridge.console import configure_queued_logging  # noqa: E402
from bridge.dispatch import _MASKS  # noqa: E402
from bridge.server import build_server  # noqa: E402


def hot_us(step: Callable[[], object], calls: int = 20_000) -> float:
    return min(timeit.repeat(step, number=calls, repeat=5)) / calls * 1e6


def cold_us(step: Callable[[], object], calls: int, pause_s: float) -> float:
    times = []
    for _ in range(calls):
        time.sleep(pause_s)
        started = time.perf_counter_ns()
        step()
        times.append(time.perf_counter_ns() - started)
    return float(np.median(times)) / 1000


def bar_request(replayer: latency.Replayer, i: int) -> bytes:
    """Bar ``i`` with the position NinjaTrader would send (its fills executed first)."""
    bars = replayer.bars
    replayer.position.on_bar(i, bars.open[i], bars.high[i], bars.low[i], bars.close[i])
    message = {
        **replayer.head,
        "type": "bar",
        "seq": i,
        "bar": latency.bar_object(bars, i),
        "position": latency.position_message(replayer.position, bars),
    }
    return json.dumps(message).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--pause-ms", type=float, default=5.0)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()

    configure_queued_logging(None, "warning", open(os.devnull, "w"))  # noqa: SIM115
    folder = Path(tempfile.mkdtemp())
    server = build_server(
        ServeConfig(
            model=ModelSource(bundle=args.bundle),
            journal_dir=folder / "journal",
            state_dir=folder / "state",
            control=None,
        )
    )
    dispatcher, journal = server.dispatcher, server.journal
    assert journal is not None
    replayer = latency.Replayer(args.bundle)
    dispatcher.handle(replayer.history())
    bars = replayer.bars
    raw, outcome = b"", None
    for i in range(latency.WARMUP_BARS, latency.WARMUP_BARS + 300):  # a realistic stream
        raw = bar_request(replayer, i)
        outcome = dispatcher.handle(raw)
        reply = json.loads(outcome.reply)
        latency.execute(reply, replayer.position, float(bars.close[i]), float(replayer.atr[i]))
    assert outcome is not None and outcome.ok

    zone = dispatcher.zone
    obj = protocol.decode(raw)
    envelope = protocol.parse_envelope(obj)
    stream = dispatcher._stream(envelope)
    bar = protocol.parse_bar(obj["bar"], "bar", zone)
    terms = dispatcher._terms(envelope, stream)
    position_features = dispatcher._position_features(stream)
    obs = stream.features.observation(position_features)
    policy = dispatcher.policy
    normalized = policy.normalizer.checked(obs)
    mask = _MASKS[stream.position.side, True][0]
    steps: list[tuple[str, Callable[[], object]]] = [
        ("read bar request (msgspec)", lambda: protocol.read_bar_request(raw, zone)),
        ("general: decode (orjson)", lambda: protocol.decode(raw)),
        ("general: envelope", lambda: protocol.parse_envelope(obj)),
        ("general: bar + position", lambda: protocol.parse_bar_request(obj, envelope, zone)),
        ("clock (now)", dispatcher.now_s),
        ("session calendar", lambda: dispatcher.calendars.point(terms.instrument, bar.local_time)),
        ("observation", lambda: stream.features.observation(position_features)),
        ("normalisation", lambda: policy.normalizer.checked(obs)),
        ("actor + masked argmax", lambda: policy.decide(normalized, mask)),
        ("journal line (os.write)", lambda: journal.record(raw, outcome, 1)),
        ("echo: json.loads + dumps", lambda: json.dumps(json.loads(raw)).encode()),
        ("nothing (timer floor)", lambda: None),
    ]
    pause_s = args.pause_ms / 1000
    print(
        f"bundle {args.bundle}; cold = median of {args.calls} calls, each after "
        f"{args.pause_ms:g} ms asleep"
    )
    print(f"{'step':28s} {'hot us':>8s} {'cold us':>8s}")
    for name, step in steps:
        print(f"{name:28s} {hot_us(step):8.2f} {cold_us(step, args.calls, pause_s):8.1f}")
    # Whole bars, each after the pause: those whose rails change (an entry, a closed
    # trade: a risk_state line, kept until after the reply in the daemon) and the others.
    changed, others = [], []
    # (getattr: the script also runs on commits before the lines were deferred)
    flush = getattr(dispatcher, "flush_logs", lambda: None)
    for i in range(latency.WARMUP_BARS + 300, latency.WARMUP_BARS + 300 + 10 * args.calls):
        raw = bar_request(replayer, i)
        before = stream.risk_state
        time.sleep(pause_s)
        started = time.perf_counter_ns()
        outcome = dispatcher.handle(raw)
        journal.record(raw, outcome, 1)
        elapsed = (time.perf_counter_ns() - started) / 1000
        (changed if stream.risk_state != before else others).append(elapsed)
        reply = json.loads(outcome.reply)
        latency.execute(reply, replayer.position, float(bars.close[i]), float(replayer.atr[i]))
        flush()  # as the daemon does once the reply is sent
    if not changed:
        print("no bar changed the rails' state; give more --calls (300 gives about 40)")
        changed = [float("nan")]
    print(
        f"whole bar (handle + journal) after a pause, median: {np.median(changed):.0f} us on "
        f"{len(changed)} bars whose rails changed, {np.median(others):.0f} us on the "
        f"{len(others)} others"
    )
    server.close()


if __name__ == "__main__":
    main()
