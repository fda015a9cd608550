"""Runs the real NinjaTrader strategy class on the behavioural NinjaTrader double.

``tests/ninjatrader_harness/NinjaTraderStubs.cs`` models the NinjaTrader 8 Strategy base
(states, Calculate, managed orders, order/execution/position events, stop rejection and
RealtimeErrorHandling, account positions); ``SimDriver.cs`` drives it from a scenario
file. :class:`ScriptedDaemon` is a real ZeroMQ endpoint (ROUTER, so a delayed reply never
blocks the next request) that answers like the daemon and lets a test choose each bar's
decision. Helpers only; the tests are in ``test_ninjatrader_lifecycle.py``.
"""

from __future__ import annotations

import heapq
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import zmq

REPO = Path(__file__).resolve().parents[1]
NINJATRADER_DIR = REPO / "ninjatrader"
HARNESS_DIR = Path(__file__).resolve().parent / "ninjatrader_harness"
TICK = 0.25
FLAT_MASK = [1, 1, 1, 0, 0, 0]
IN_POSITION_MASK = [1, 1, 1, 1, 1, 1]
ACTIONS = ("HOLD", "BUY", "SELL", "MOVE_TO_BE", "ENABLE_TRAIL", "DISABLE_TRAIL")
MODEL = {
    "version": "scripted-1",
    "sha256": "a" * 64,
    "obs_size": 228,
    "features": "v1",
    "instrument": "NQ",
    "bar_period": {"type": "minute", "value": 1},
    "trained_tick_size": TICK,
}


def strategy_sources() -> list[Path]:
    """Every C# file the trader installs (the strategy and its helpers)."""
    return sorted(NINJATRADER_DIR.rglob("*.cs"))


def build_sim(out: Path, sources: list[Path] | None = None) -> subprocess.CompletedProcess[str]:
    mcs = shutil.which("mcs")
    assert mcs, "mcs not found: apt-get install -y --no-install-recommends mono-mcs"
    command = [mcs, "-langversion:5", "-nologo", f"-out:{out}", "-r:System.Xml.dll"]
    command += [str(HARNESS_DIR / "NinjaTraderStubs.cs"), str(HARNESS_DIR / "SimDriver.cs")]
    command += [str(s) for s in (sources or strategy_sources())]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


Decider = Callable[[dict[str, Any], int], dict[str, Any] | None]


def reply_for(request: dict[str, Any], action: int = 0, **extra: Any) -> dict[str, Any]:
    """A valid bar reply deciding ``action`` under the request's position mask."""
    side = request["position"]["side"]
    mask = FLAT_MASK if side == 0 else IN_POSITION_MASK
    reply: dict[str, Any] = {
        "v": 1,
        "type": "bar",
        "ok": True,
        "seq": request["seq"],
        "time": request["bar"]["time"],
        "action": action,
        "name": ACTIONS[action],
        "mask": mask,
        "probs": [1.0 / 6] * 6,
        "warming_up": False,
        "model_version": MODEL["version"],
        "orders": {},
    }
    reply.update(extra)
    return reply


def buy(request: dict[str, Any], stop: float, target: float) -> dict[str, Any]:
    orders = {"entry": "market", "stop_price": stop, "target_price": target}
    return reply_for(request, 1, orders=orders)


class ScriptedDaemon:
    """Answers hello/history/ping/position like the daemon; bar replies come from
    ``decide(request, bar_index)`` (None: HOLD). ``delay(request)`` seconds before a reply."""

    def __init__(self) -> None:
        self.context: zmq.Context[Any] = zmq.Context.instance()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.requests: list[tuple[float, dict[str, Any]]] = []
        self.decide: Decider = lambda request, index: None
        self.delay: Callable[[dict[str, Any]], float] = lambda request: 0.0
        self.hello_model: dict[str, Any] = dict(MODEL)
        self.risk: dict[str, Any] = {"state": "active", "rails": {}}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.bar_index: dict[tuple[str, int], int] = {}
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        kind = request.get("type")
        base = {"v": 1, "type": kind, "ok": True, "seq": request.get("seq")}
        if kind == "hello":
            return base | {
                "protocol": 1,
                "model": self.hello_model,
                "actions": list(ACTIONS),
                "warmup_bars": 10,
                "risk": self.risk,
            }
        if kind == "history":
            return base | {"accepted": len(request["bars"]), "ready": True}
        if kind == "ping":
            return base | {"uptime_s": 1e9, "model_version": MODEL["version"]}
        if kind == "bar":
            key = (request["client"], request["seq"])
            with self.lock:
                if key not in self.bar_index:
                    self.bar_index[key] = sum(1 for c, _ in self.bar_index if c == key[0])
                index = self.bar_index[key]
            return self.decide(request, index) or reply_for(request)
        return base

    def serve(self) -> None:
        pending: list[tuple[float, int, list[bytes]]] = []
        counter = 0
        while not self.stop_event.is_set():
            timeout = 20
            if pending:
                timeout = max(0, min(timeout, int((pending[0][0] - time.monotonic()) * 1000)))
            if self.socket.poll(timeout):
                identity, empty, body = self.socket.recv_multipart()
                request = json.loads(body)
                with self.lock:
                    self.requests.append((time.monotonic(), request))
                reply = json.dumps(self.answer(request)).encode()
                due = time.monotonic() + self.delay(request)
                counter += 1
                heapq.heappush(pending, (due, counter, [identity, empty, reply]))
            while pending and pending[0][0] <= time.monotonic():
                self.socket.send_multipart(heapq.heappop(pending)[2])

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for _, r in self.requests if r.get("type") == kind]

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)
        self.socket.close()


@dataclass
class Bar:
    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int = 500

    def line(self, kind: str) -> str:
        stamp = self.time.strftime("%Y-%m-%dT%H:%M:%S")
        values = (self.open, self.high, self.low, self.close)
        return "\t".join([kind, stamp, *(repr(float(v)) for v in values), str(self.volume)])


def quiet_bars(start: datetime, count: int, price: float = 21000.0) -> list[Bar]:
    """1-minute bars that wander by a few ticks around ``price`` (close time stamps)."""
    bars = []
    for i in range(count):
        o = price + TICK * ((i * 7) % 5 - 2)
        c = price + TICK * ((i * 3) % 5 - 2)
        bars.append(
            Bar(start + timedelta(minutes=i), o, max(o, c) + TICK, min(o, c) - TICK, c, 400 + i)
        )
    return bars


@dataclass
class Scenario:
    """One run of the strategy on the NinjaTrader double."""

    endpoint: str
    folder: Path
    instances: list[tuple[str, str]] = field(default_factory=lambda: [("A", "Sim101")])
    props: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, dict[str, bool]] = field(default_factory=dict)
    accounts: dict[str, tuple[int, float]] = field(default_factory=dict)
    timezone: str = "UTC"
    history: list[Bar] = field(default_factory=list)
    live: list[Bar] = field(default_factory=list)
    wait_ms: int = 5000
    lockfile: Path | None = None
    flatten: dict[int, str] = field(default_factory=dict)
    strategy: str | None = None  # full class name; None: the AITradingBridge strategy

    def __post_init__(self) -> None:
        if not self.history:
            self.history = quiet_bars(datetime(2025, 11, 7, 9, 31), 30)
        if not self.live:
            self.live = quiet_bars(self.history[-1].time + timedelta(minutes=1), 4)

    def text(self) -> str:
        lines = [
            f"timezone\t{self.timezone}",
            "instrument\tNQ\tNQ 12-25\t0.25\t20\tUsDollar",
            "period\tMinute\t1",
            f"userdata\t{self.folder / 'userdata'}{'/'}",
            f"wait_ms\t{self.wait_ms}",
        ]
        if self.strategy is not None:
            lines.append(f"strategy\t{self.strategy}")
        if self.lockfile is not None:
            lines.append(f"lockfile\t{self.lockfile}")
        for index, name in self.flatten.items():
            lines.append(f"flatten\t{index}\t{name}")
        for name, (signed, average) in self.accounts.items():
            lines.append(f"account\t{name}\t{signed}\t{average!r}")
        for instance, account in self.instances:
            lines.append(f"instance\t{instance}\t{account}")
            props = {
                "Endpoint": self.endpoint,
                "TimeoutMs": 1000,
                "Retries": 2,
                "HistoryBars": 500,
            } | self.props.get(instance, {})
            for name, value in props.items():
                lines.append(f"prop\t{instance}\t{name}\t{value}")
            for name, on in self.options.get(instance, {}).items():
                lines.append(f"option\t{instance}\t{name}\t{int(on)}")
        lines += [b.line("history") for b in self.history]
        lines += [b.line("live") for b in self.live]
        return "\n".join(lines) + "\n"

    def run(self, exe: Path, timeout: float = 90) -> list[dict[str, Any]]:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "scenario.txt"
        path.write_text(self.text())
        mono = shutil.which("mono")
        assert mono, "mono not found: apt-get install -y --no-install-recommends mono-mcs"
        result = subprocess.run(
            [mono, str(exe), str(path)], capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"simulation failed:\n{result.stdout}\n{result.stderr}"
        return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def events(
    run: list[dict[str, Any]], kind: str, instance: str | None = None
) -> list[dict[str, Any]]:
    return [e for e in run if e["event"] == kind and instance in (None, e["instance"])]


def final(run: list[dict[str, Any]], instance: str = "A") -> dict[str, Any]:
    (result,) = events(run, "final", instance)
    return result


def entries(run: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e
        for e in events(run, "order")
        if e["type"] == "Market" and e["action"] in ("Buy", "SellShort")
    ]


def printed(run: list[dict[str, Any]], instance: str | None = None) -> str:
    return "\n".join(
        e["text"]
        for e in run
        if e["event"] in ("print", "log") and instance in (None, e["instance"])
    )
