"""Two checkouts' daemons side by side: which one answers a bar faster, on the same machine
at the same time.

`bridge_latency.py` compares the daemon with a bare echo; on a shared machine its ratio
moves with the load (a busy CPU makes the echo faster), so a change of a few percent in
the daemon cannot be read from two runs made at different times. This script starts
``ai-trading-bridge serve`` from each of two checkouts (e.g. ``git worktree add --detach
../before HEAD~1``), warms both with the same history and replays the same synthetic
bars to each, alternating in blocks, with ``--gap-us`` between a reply and the next
request (as `bridge_latency.py`: journal and log file on, sleeping between bars). Load
from elsewhere hits both alike. It prints each daemon's p50 and p90 and the difference
of the p50s with a 90% bootstrap interval; run it twice with the checkouts swapped to
see any bias of the order.

``--in-process`` compares the daemons' own work instead, without sockets: each checkout's
dispatcher and journal in a process of its own, handling the same bars one at a time
in turn, each bar after ``--gap-us`` asleep (the bar that follows a pause, which is the
daemon's case all day); it prints each one's median and the median of the paired
differences. This is how each change to the bar path was measured.

    python benchmarks/bridge_ab.py BEFORE_DIR AFTER_DIR [--bars 2000] [--block 100]
        [--gap-us 5000] [--bundle DIR] [--in-process]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

HERE = Path(__file__).resolve().parent


def main() -> None:
    # Not at the top: a --child imports its own checkout's copy (and bridge, env).
    sys.path.insert(0, str(HERE))
    import bridge_latency as latency

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", type=Path, nargs=2, help="the two checkouts' folders")
    parser.add_argument("--bundle", type=Path, default=latency.DEFAULT_BUNDLE)
    parser.add_argument("--bars", type=int, default=2000)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--gap-us", type=int, default=5000)
    parser.add_argument("--in-process", action="store_true", help="the daemons' own work")
    args = parser.parse_args()
    for root in args.checkouts:
        if not (root / "ai_trading_bridge.py").is_file():
            parser.error(f"{root} is not a checkout of this project (no ai_trading_bridge.py)")
    if args.in_process:
        in_process(args)
        return

    context = zmq.Context()
    daemons, sockets, replayers = [], [], []
    latencies: list[list[int]] = [[], []]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for k, root in enumerate(args.checkouts):
                latency.ROOT = root.resolve()  # Daemon runs `python -m ai_trading_bridge` there
                workdir = Path(tmp) / f"daemon{k}"
                workdir.mkdir()
                daemon = latency.Daemon(args.bundle, workdir, False, [])
                daemons.append(daemon)
                socket = context.socket(zmq.REQ)
                socket.connect(daemon.endpoint)
                sockets.append(socket)
                daemon.wait_ready(socket)
                replayer = latency.Replayer(args.bundle)
                replayers.append(replayer)
                socket.send(replayer.history())
                socket.recv()
            end = latency.WARMUP_BARS + args.bars
            for start in range(latency.WARMUP_BARS, end, args.block):
                block = range(start, min(start + args.block, end))
                for k in range(2):
                    times, _ = replayers[k].run(sockets[k], block, args.gap_us)
                    latencies[k] += times
        finally:
            for socket in sockets:
                socket.close(linger=0)
            for daemon in daemons:
                daemon.stop()
            context.term()
    first, second = (np.array(values) / 1000.0 for values in latencies)
    for root, values in zip(args.checkouts, (first, second)):
        p50, p90 = np.percentile(values, [50, 90])
        print(f"{root!s:40s} p50 {p50:7.1f} µs  p90 {p90:7.1f} µs  ({len(values)} bars)")
    rng = np.random.default_rng(0)
    differences = [
        np.median(second[rng.integers(0, len(second), len(second))])
        - np.median(first[rng.integers(0, len(first), len(first))])
        for _ in range(2000)
    ]
    low, high = np.percentile(differences, [5, 95])
    print(
        f"p50 of the second - p50 of the first: {np.median(second) - np.median(first):+.1f} µs "
        f"(90% interval {low:+.1f} .. {high:+.1f})"
    )


WARM_BARS = 300  # bars handled before timing (the session's first minutes)


def in_process(args: argparse.Namespace) -> None:
    """Each checkout's dispatcher in a child (``--child``), bars in turn; paired figures."""
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", str(root.resolve()), str(args.bundle)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for root in args.checkouts
    ]
    times: list[list[float]] = [[], []]
    try:
        for child in children:
            assert child.stdin is not None and child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise SystemExit("a child did not start; see its error above")
        for _ in range(WARM_BARS + args.bars):
            for k, child in enumerate(children):
                child.stdin.write(f"{args.gap_us}\n")  # type: ignore[union-attr]
                child.stdin.flush()  # type: ignore[union-attr]
                times[k].append(float(child.stdout.readline()))  # type: ignore[union-attr]
    finally:
        for child in children:
            child.stdin.close()  # type: ignore[union-attr]
            child.wait(30)
    first, second = (np.array(t[WARM_BARS:]) for t in times)
    for root, values in zip(args.checkouts, (first, second)):
        print(f"{root!s:40s} median {np.median(values):7.1f} µs per bar ({len(values)} bars)")
    paired = second - first
    rng = np.random.default_rng(0)
    medians = [np.median(paired[rng.integers(0, len(paired), len(paired))]) for _ in range(2000)]
    low, high = np.percentile(medians, [5, 95])
    print(
        f"median of the paired differences (second - first): {np.median(paired):+.1f} µs "
        f"(90% interval {low:+.1f} .. {high:+.1f})"
    )


def child(root: Path, bundle: Path) -> None:
    """One checkout's dispatcher and journal: on each line (a pause in µs) from stdin,
    sleep, handle the next bar and journal it, and print the µs that took."""
    sys.path[:0] = [str(root), str(root / "benchmarks")]
    import json

    import bridge_latency as checkout  # this checkout's, with its bridge and env

    from bridge.config import ModelSource, ServeConfig
    from bridge.console import configure_queued_logging
    from bridge.server import build_server

    configure_queued_logging(None, "warning", open(os.devnull, "w"))  # noqa: SIM115
    with tempfile.TemporaryDirectory() as tmp:
        server = build_server(
            ServeConfig(
                model=ModelSource(bundle=bundle),
                journal_dir=Path(tmp) / "journal",
                state_dir=Path(tmp) / "state",
                control=None,
            )
        )
        dispatcher, journal = server.dispatcher, server.journal
        assert journal is not None
        replayer = checkout.Replayer(bundle)
        dispatcher.handle(replayer.history())
        bars, position = replayer.bars, replayer.position
        i = checkout.WARMUP_BARS
        print("ready", flush=True)
        for line in sys.stdin:
            position.on_bar(i, bars.open[i], bars.high[i], bars.low[i], bars.close[i])
            message = {
                **replayer.head,
                "type": "bar",
                "seq": i,
                "bar": checkout.bar_object(bars, i),
                "position": checkout.position_message(position, bars),
            }
            raw = json.dumps(message).encode()
            time.sleep(int(line) / 1e6)
            started = time.perf_counter_ns()
            outcome = dispatcher.handle(raw)
            journal.record(raw, outcome, 1)
            print((time.perf_counter_ns() - started) / 1000, flush=True)
            checkout.execute(json.loads(outcome.reply), position, bars.close[i], replayer.atr[i])
            getattr(dispatcher, "flush_logs", lambda: None)()
            i += 1
        server.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
