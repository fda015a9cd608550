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

    python benchmarks/bridge_ab.py BEFORE_DIR AFTER_DIR [--bars 2000] [--block 100]
        [--gap-us 5000] [--bundle DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bridge_latency as latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", type=Path, nargs=2, help="the two checkouts' folders")
    parser.add_argument("--bundle", type=Path, default=latency.DEFAULT_BUNDLE)
    parser.add_argument("--bars", type=int, default=2000)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--gap-us", type=int, default=5000)
    args = parser.parse_args()
    for root in args.checkouts:
        if not (root / "ai_trading_bridge.py").is_file():
            parser.error(f"{root} is not a checkout of this project (no ai_trading_bridge.py)")

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


if __name__ == "__main__":
    main()
