"""Bridge latency: bar request to reply, over tcp loopback, client in its own process.

Measures in one run, on the same bars and with the same client loop:

1. the daemon (``python -m ai_trading_bridge serve`` in a subprocess, journal and JSON log
   file on, as a trader runs it), and
2. a bare pyzmq REQ/REP echo server (another subprocess) that parses each request with
   ``json.loads`` and answers ``json.dumps`` of it,

interleaved in blocks so drift affects both alike, and prints p50/p90/p99/max of each and
the ratio of the p50s. The client replays synthetic NQ bars like NinjaTrader: hello,
history, then each bar with its position, executing the replies
(:func:`bridge.replay.execute`). Between a reply and the next request it waits ``--gap-us``
(busy-waiting, so the client itself wakes instantly): live bars arrive a minute apart, and
the daemon journals and logs after replying, in that gap.

Then, in this process, the per-decision compute time of the daemon's fast path
(normalise + numpy actor + masked argmax) against SB3's ``VecNormalize.normalize_obs`` +
``MaskablePPO.predict(..., action_masks=..., deterministic=True)``.

Targets (SPEC.md): daemon p50 within 2x of the echo's; daemon p99 under 1 ms.

    python benchmarks/bridge_latency.py [--bundle DIR] [--bars 3000] [--gap-us 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing import Process
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.config import DEFAULT_BUNDLE, ModelSource  # noqa: E402
from bridge.policy import load_policy  # noqa: E402
from bridge.replay import bar_object, execute, position_message  # noqa: E402
from env.config import WARMUP_BARS  # noqa: E402
from env.execution import SimulatedPosition  # noqa: E402
from env.features import compute_market_features  # noqa: E402
from env.mask import action_mask  # noqa: E402
from env.synthetic import default_bars  # noqa: E402
from env.trading_env import EnvConfig  # noqa: E402

BLOCK = 250  # requests per block; daemon and echo blocks alternate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_server(endpoint: str) -> None:
    """The baseline: REP socket, json.loads, json.dumps, send."""
    context = zmq.Context()
    rep = context.socket(zmq.REP)
    rep.bind(endpoint)
    while True:
        message = rep.recv()
        if message == b"stop":
            rep.send(b"stopped")
            break
        rep.send(json.dumps(json.loads(message)).encode())
    rep.close(linger=0)
    context.term()


def wait_for_daemon(req: zmq.Socket, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    req.send(json.dumps({"v": 1, "type": "ping"}).encode())
    while time.monotonic() < deadline:
        if req.poll(200, zmq.POLLIN):
            req.recv()
            return
    raise SystemExit("the daemon did not answer within 60 s")


def spin(microseconds: int) -> None:
    deadline = time.perf_counter_ns() + microseconds * 1000
    while time.perf_counter_ns() < deadline:
        pass


def measure(bundle: Path, n_bars: int, gap_us: int, workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    daemon_endpoint = f"tcp://127.0.0.1:{free_port()}"
    echo_endpoint = f"tcp://127.0.0.1:{free_port()}"
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ai_trading_bridge",
            "serve",
            "--bind",
            daemon_endpoint,
            "--bundle",
            str(bundle),
            "--control",
            "none",
            "--journal-dir",
            str(workdir / "journal"),
            "--log-file",
            str(workdir / "daemon.log"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "stderr.log", "w"),  # noqa: SIM115
    )
    echo = Process(target=echo_server, args=(echo_endpoint,), daemon=True)
    echo.start()
    context = zmq.Context()
    to_daemon = context.socket(zmq.REQ)
    to_daemon.connect(daemon_endpoint)
    to_echo = context.socket(zmq.REQ)
    to_echo.connect(echo_endpoint)
    try:
        wait_for_daemon(to_daemon)
        card = (
            json.loads((bundle / "model.json").read_text())
            if (bundle / "model.json").exists()
            else {}
        )
        env = EnvConfig.from_dict(card["env"]) if card.get("env") else EnvConfig()
        bars = default_bars()
        _, atr = compute_market_features(
            bars.open, bars.high, bars.low, bars.close, bars.volume, bars.minute_of_day
        )
        head = {"v": 1, "client": "bench", "instrument": "NQ 12-25"}
        history = {
            **head,
            "type": "history",
            "seq": 1,
            "bars": [bar_object(bars, i) for i in range(WARMUP_BARS)],
        }
        to_daemon.send(json.dumps(history).encode())
        to_daemon.recv()
        position = SimulatedPosition(env.instrument, env.execution)
        daemon_ns: list[int] = []
        echo_ns: list[int] = []
        for block_start in range(WARMUP_BARS, WARMUP_BARS + n_bars, BLOCK):
            block = range(block_start, min(block_start + BLOCK, WARMUP_BARS + n_bars))
            for i in block:  # the daemon, executing its replies
                position.on_bar(i, bars.open[i], bars.high[i], bars.low[i], bars.close[i])
                message = {
                    **head,
                    "type": "bar",
                    "seq": i,
                    "bar": bar_object(bars, i),
                    "position": position_message(position, bars),
                }
                payload = json.dumps(message).encode()
                started = time.perf_counter_ns()
                to_daemon.send(payload)
                reply = to_daemon.recv()
                daemon_ns.append(time.perf_counter_ns() - started)
                execute(json.loads(reply), position, float(bars.close[i]), float(atr[i]))
                spin(gap_us)
            for i in block:  # the echo, same bars and position shape
                message = {
                    **head,
                    "type": "bar",
                    "seq": i,
                    "bar": bar_object(bars, i),
                    "position": position_message(position, bars),
                }
                payload = json.dumps(message).encode()
                started = time.perf_counter_ns()
                to_echo.send(payload)
                to_echo.recv()
                echo_ns.append(time.perf_counter_ns() - started)
                spin(gap_us)
        to_echo.send(b"stop")
        to_echo.recv()
    finally:
        to_daemon.close(linger=0)
        to_echo.close(linger=0)
        context.term()
        daemon.terminate()
        daemon.wait(10)
        echo.join(5)
    return np.array(daemon_ns) / 1000.0, np.array(echo_ns) / 1000.0


def compute_times(bundle: Path, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Per-decision compute, microseconds: fast path vs SB3 normalize_obs + predict."""
    import torch

    torch.set_num_threads(1)
    policy = load_policy(ModelSource(bundle=bundle))
    with open(bundle / "vecnormalize.pkl", "rb") as f:
        vecnorm = pickle.load(f)
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(n, 228)).astype(np.float32)
    masks = [action_mask(int(s)) for s in rng.integers(-1, 2, n)]
    fast, sb3 = [], []
    for obs, mask in zip(observations, masks):
        mask_list = mask.tolist()
        started = time.perf_counter_ns()
        policy.decide(policy.normalizer(obs), mask_list)
        fast.append(time.perf_counter_ns() - started)
        started = time.perf_counter_ns()
        policy.model.predict(vecnorm.normalize_obs(obs), action_masks=mask, deterministic=True)
        sb3.append(time.perf_counter_ns() - started)
    return np.array(fast) / 1000.0, np.array(sb3) / 1000.0


def stats(values: np.ndarray) -> str:
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return f"p50 {p50:7.1f}  p90 {p90:7.1f}  p99 {p99:7.1f}  max {values.max():8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--bars", type=int, default=3000)
    parser.add_argument("--gap-us", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    with tempfile.TemporaryDirectory() as tmp:
        daemon, echo = measure(args.bundle, args.bars, args.gap_us, Path(tmp))
    print(
        f"bar -> reply over tcp loopback, {len(daemon)} requests each, gap {args.gap_us} µs (µs):"
    )
    print(f"  daemon     {stats(daemon)}")
    print(f"  bare echo  {stats(echo)}")
    ratio = np.percentile(daemon, 50) / np.percentile(echo, 50)
    p99 = np.percentile(daemon, 99)
    print(
        f"  daemon p50 / echo p50 = {ratio:.2f}x "
        f"(target <= 2x: {'met' if ratio <= 2 else 'NOT met'})"
    )
    print(f"  daemon p99 = {p99:.0f} µs (target < 1000 µs: {'met' if p99 < 1000 else 'NOT met'})")
    fast, sb3 = compute_times(args.bundle)
    print(f"per-decision compute, {len(fast)} observations (µs):")
    print(f"  fast path (normalise + numpy actor + masked argmax)  {stats(fast)}")
    print(f"  SB3 normalize_obs + MaskablePPO.predict               {stats(sb3)}")
    print(f"  speed-up at p50: {np.percentile(sb3, 50) / np.percentile(fast, 50):.0f}x")


if __name__ == "__main__":
    main()
