"""The NinjaTrader 8 client (ninjatrader/), tested on Linux with Mono.

The NinjaTrader-free helpers (ninjatrader/AddOns/AITradingBridge/: ZMTP 3.0 REQ client,
JSON, protocol session, worker thread, trailing and guard rules) are compiled with the
console harness in tests/ninjatrader_harness/ and run against the real daemon
(``python -m ai_trading_bridge serve``) on a random loopback port, against a pyzmq echo
server, against hostile TCP servers and against a dead port. The strategy class
(ninjatrader/Strategies/AITradingBridge.cs) is compiled against the NinjaTrader 8 API
double, so a wrong member name fails here; test_ninjatrader_lifecycle.py runs it.

Mono's C# compiler is required: ``apt-get install -y --no-install-recommends mono-mcs``.
Without it these tests fail (they never skip): CI installs it.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zmq
from ninjatrader_sim import Scenario, build_sim, quiet_bars

from env.mask import action_mask

REPO = Path(__file__).resolve().parents[1]
NINJATRADER_DIR = REPO / "ninjatrader"
STRATEGY_SOURCE = NINJATRADER_DIR / "Strategies" / "AITradingBridge.cs"
ADDON_SOURCES = sorted((NINJATRADER_DIR / "AddOns" / "AITradingBridge").glob("*.cs"))
HARNESS_DIR = Path(__file__).resolve().parent / "ninjatrader_harness"
INSTALL_HINT = (
    "needs the Mono C# compiler and runtime: apt-get install -y --no-install-recommends "
    "mono-mcs (CI installs it; these tests fail rather than skip without it)"
)
ACTIONS = ("HOLD", "BUY", "SELL", "MOVE_TO_BE", "ENABLE_TRAIL", "DISABLE_TRAIL")
FLAT_MASK = [1, 1, 1, 0, 0, 0]
IN_POSITION_MASK = [1, 1, 1, 1, 1, 1]
DAEMON_START_TIMEOUT_S = 90.0
HARNESS_TIMEOUT_S = 60.0


# ------------------------------------------------------------------------------ helpers


def require_tool(name: str) -> str:
    """Path of a Mono tool; fails the test (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: {INSTALL_HINT}")
    return path


def compile_cs(out: Path, sources: list[Path], *flags: str) -> subprocess.CompletedProcess[str]:
    """mcs at C# 5 (what NinjaTrader 8's compiler accepts)."""
    command = [require_tool("mcs"), "-langversion:5", "-nologo", f"-out:{out}", *flags]
    command += [str(s) for s in sources]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_harness(
    exe: Path, *args: str, stdin: str | None = None, timeout: float = HARNESS_TIMEOUT_S
) -> list[dict[str, Any]]:
    result = subprocess.run(
        [require_tool("mono"), str(exe), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"harness failed:\n{result.stdout}\n{result.stderr}"
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def events_of(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


class Daemon:
    """``python -m ai_trading_bridge serve`` on a loopback port, logging to a file."""

    def __init__(self, port: int, folder: Path) -> None:
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.folder = folder
        self.log_path = folder / "daemon.log"
        self.journal_dir = folder / "journal"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        self.folder.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.pop("AITB_BIND", None)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                daemon_command(self.endpoint, self.journal_dir),
                cwd=self.folder,  # whatever the daemon writes stays in the test's folder
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Pings (Lazy Pirate style, as the C# client does) until the daemon answers."""
        deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
        context: zmq.Context[Any] = zmq.Context.instance()
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"daemon exited with {self.process.returncode}:\n{self.log()}")
            request = context.socket(zmq.REQ)
            request.setsockopt(zmq.LINGER, 0)
            request.setsockopt(zmq.RCVTIMEO, 500)
            request.connect(self.endpoint)
            try:
                request.send(b'{"v": 1, "type": "ping"}')
                if json.loads(request.recv()).get("ok") is True:
                    return
            except zmq.Again:
                pass
            finally:
                request.close()
        pytest.fail(f"daemon not answering ping at {self.endpoint}:\n{self.log()}")

    def request(self, text: str) -> bytes:
        """One raw request/reply, for checks outside the C# client."""
        request: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REQ)
        request.setsockopt(zmq.LINGER, 0)
        request.setsockopt(zmq.RCVTIMEO, 5000)
        request.connect(self.endpoint)
        try:
            request.send(text.encode())
            return bytes(request.recv())
        finally:
            request.close()

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, the way a crash or a pulled plug ends the daemon."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if hasattr(signal, "SIGCONT"):  # POSIX: in case a test left it frozen
            self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def journal(self) -> list[dict[str, Any]]:
        """Every request the daemon processed, with ``retry`` true for cached replies."""
        return [
            json.loads(line)
            for path in sorted(self.journal_dir.glob("journal-*.jsonl"))
            for line in path.read_text().splitlines()
            if line.strip()
        ]

    def journal_for(self, client: str, seq: int) -> list[dict[str, Any]]:
        """Journal entries of one request (``retry`` true: answered from the cache)."""
        return [
            e
            for e in self.journal()
            if e.get("request", {}).get("client") == client and e["request"].get("seq") == seq
        ]


def daemon_command(endpoint: str, journal_dir: Path) -> list[str]:
    """The real daemon; with no model flags it serves its bundled demo model. The control
    socket is off (its default is a fixed port) and the journal goes to the test's folder."""
    return [
        sys.executable, "-m", "ai_trading_bridge", "serve", "--bind", endpoint,
        "--control", "none", "--journal-dir", str(journal_dir),
    ]  # fmt: skip


class SessionControl:
    """Runs the ``session`` scenario and does something to the daemon at its pause."""

    def __init__(self, exe: Path, endpoint: str, *options: str) -> None:
        self.process = subprocess.Popen(
            [require_tool("mono"), str(exe), "session", endpoint, *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []

    def read_until_pause(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            self.events.append(event)
            if event["event"] == "pause":
                return event
        stderr = self.process.stderr.read() if self.process.stderr else ""
        pytest.fail(f"harness ended before pausing:\n{stderr}")

    def resume(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = HARNESS_TIMEOUT_S) -> tuple[list[dict[str, Any]], str]:
        out, err = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, err
        self.events += [json.loads(line) for line in out.splitlines() if line.strip()]
        return self.events, err

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def assert_consecutive_seqs(events: list[dict[str, Any]]) -> None:
    """Every bar and position request got the next seq; none was decided twice."""
    seqs = [e["seq"] for e in events if e["event"] in ("decision", "position")]
    assert seqs, "no requests were made"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq must increase by one per request"


def assert_decision_valid(d: dict[str, Any]) -> None:
    """A decision the strategy may act on, checked against the raw reply bytes too."""
    assert d["outcome"] == "ok", d
    assert d["name"] == ACTIONS[d["action"]]
    # The env's mask for the side; BUY/SELL off near the session close, as in training.
    assert d["mask"] in [action_mask(d["side"], entries).tolist() for entries in (True, False)], d
    assert d["mask"][d["action"]] == 1, "action must be valid under the mask it was decided with"
    raw = json.loads(d["raw"])  # the C# reader and Python's json must agree
    assert (raw["seq"], raw["action"], raw["mask"]) == (d["seq"], d["action"], d["mask"])
    orders = raw["orders"]
    if d["name"] in ("BUY", "SELL"):
        assert d["side"] == 0, "the daemon never sends an entry while in a position"
        assert (
            d["stop_price"] == orders["stop_price"] and d["target_price"] == orders["target_price"]
        )
        direction = 1 if d["name"] == "BUY" else -1
        assert direction * (d["target_price"] - d["stop_price"]) > 0, (
            "target and stop on the wrong sides"
        )
    elif d["name"] in ("MOVE_TO_BE", "DISABLE_TRAIL"):
        assert d["stop_price"] == orders["stop_price"]
    elif d["name"] == "ENABLE_TRAIL":
        assert d["trail_points"] == orders["trail_points"] > 0


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Harness.cs + the add-on helpers (no NinjaTrader types), at C# 5."""
    exe = tmp_path_factory.mktemp("harness") / "harness.exe"
    result = compile_cs(exe, [HARNESS_DIR / "Harness.cs", *ADDON_SOURCES], "-warnaserror+")
    assert result.returncode == 0, result.stdout + result.stderr
    require_tool("mono")
    return exe


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The strategy class on the NinjaTrader double (see tests/ninjatrader_sim.py)."""
    exe = tmp_path_factory.mktemp("sim") / "sim.exe"
    result = build_sim(exe)
    assert result.returncode == 0, result.stdout + result.stderr
    return exe


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    instance = Daemon(free_port(), tmp_path_factory.mktemp("daemon")).start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture()
def echo_endpoint() -> Iterator[str]:
    """A pyzmq REP socket that returns every message unchanged."""
    context: zmq.Context[Any] = zmq.Context.instance()
    reply = context.socket(zmq.REP)
    reply.setsockopt(zmq.LINGER, 0)
    port = reply.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if reply.poll(50):
                reply.send(reply.recv())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(timeout=5)
        reply.close()


def crafted_bar_reply(request: dict[str, Any], case: str) -> dict[str, Any]:
    """A well-formed bar reply, spoiled in the way ``case`` names."""
    reply: dict[str, Any] = {
        "v": 1,
        "type": "bar",
        "ok": True,
        "seq": request["seq"],
        "time": request["bar"]["time"],
        "action": 1,
        "name": "BUY",
        "mask": FLAT_MASK,
        "probs": [0.1, 0.5, 0.1, 0.1, 0.1, 0.1],
        "warming_up": False,
        "model_version": "crafted",
        "orders": {"entry": "market", "stop_price": 20000.0, "target_price": 22000.0},
    }
    spoil: dict[str, dict[str, Any]] = {
        "action_masked_out": {"action": 3, "name": "MOVE_TO_BE", "orders": {"stop_price": 1.0}},
        "name_not_matching_id": {"name": "SELL"},
        "seq_of_another_request": {"seq": request["seq"] + 1},
        "entry_without_prices": {"orders": {"entry": "market"}},
        "action_out_of_range": {"action": 6, "name": "PANIC"},
        "mask_too_short": {"mask": [1, 1, 1]},
        "trail_without_distance": {
            "action": 4,
            "name": "ENABLE_TRAIL",
            "mask": IN_POSITION_MASK,
            "orders": {},
        },
        "error_reply": {
            "type": "error",
            "ok": False,
            "error": {"code": "internal", "message": "model exploded"},
        },
    }
    reply.update(spoil[case])
    return reply


CRAFTED_CASES = (
    "action_masked_out",
    "name_not_matching_id",
    "seq_of_another_request",
    "entry_without_prices",
    "action_out_of_range",
    "mask_too_short",
    "trail_without_distance",
    "error_reply",
)


@pytest.fixture()
def crafted_daemon(request: pytest.FixtureRequest) -> Iterator[str]:
    """A pyzmq REP that answers hello/history/ping normally and bar with a spoiled reply."""
    context: zmq.Context[Any] = zmq.Context.instance()
    rep = context.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if not rep.poll(50):
                continue
            message = json.loads(rep.recv())
            kind = message["type"]
            if kind == "bar":
                reply = crafted_bar_reply(message, request.param)
            elif kind == "hello":
                reply = {"v": 1, "type": "hello", "ok": True, "warmup_bars": 45, "model": {}}
            else:
                reply = {
                    "v": 1,
                    "type": kind,
                    "ok": True,
                    "accepted": 60,
                    "ready": True,
                    "uptime_s": 9e9,
                }
            rep.send(json.dumps(reply).encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(timeout=5)
        rep.close()


@pytest.mark.parametrize(
    ("crafted_daemon", "outcome"),
    [(case, "error" if case == "error_reply" else "invalid") for case in CRAFTED_CASES],
    indirect=["crafted_daemon"],
)
def test_reply_the_client_must_not_act_on_becomes_hold(
    harness: Path, crafted_daemon: str, outcome: str
) -> None:
    """A reply that parses but breaks the protocol's promises is answered with HOLD at
    once; it is not retried (the daemon would send the same reply again)."""
    result = probe(harness, crafted_daemon)
    assert result["started"]
    assert (result["action"], result["name"]) == (0, "HOLD")
    assert result["outcome"] == outcome
    assert result["attempts"] == 1


# ------------------------------------------------------------------ hostile TCP servers


def zmtp_greeting(mechanism: bytes = b"NULL") -> bytes:
    return (
        b"\xff"
        + b"\x00" * 8
        + b"\x7f"
        + bytes([3, 0])
        + mechanism.ljust(20, b"\x00")
        + b"\x01"
        + b"\x00" * 31
    )


def zmtp_ready(socket_type: bytes) -> bytes:
    body = b"\x05READY" + b"\x0bSocket-Type" + len(socket_type).to_bytes(4, "big") + socket_type
    return bytes([0x04, len(body)]) + body


CLIENT_HANDSHAKE_BYTES = 64 + 27  # our greeting plus our READY command

HOSTILE_REPLIES: dict[str, tuple[bytes, bytes]] = {
    # mode: (sent on accept, sent once the request has arrived)
    "random_bytes": (bytes(random.Random(3).randrange(0, 255) for _ in range(300)), b""),
    "http_server": (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", b""),
    "silent": (b"", b""),
    "curve_mechanism": (zmtp_greeting(b"CURVE"), b""),
    "pub_socket": (zmtp_greeting() + zmtp_ready(b"PUB"), b""),
    "bad_frame_flags": (zmtp_greeting() + zmtp_ready(b"REP"), b"\xf0\x05hello"),
    "huge_frame": (
        zmtp_greeting() + zmtp_ready(b"REP"),
        b"\x01\x00\x02" + (1 << 62).to_bytes(8, "big"),
    ),
    "truncated_frame": (zmtp_greeting() + zmtp_ready(b"REP"), b'\x01\x00\x00\x40{"ok"'),
    "missing_delimiter": (zmtp_greeting() + zmtp_ready(b"REP"), b'\x00\x0b{"ok":true}'),
    "invalid_utf8": (
        zmtp_greeting() + zmtp_ready(b"REP"),
        b"\x01\x00" + b"\x00\x04\xff\xfe\xfd\xfc",
    ),
    "not_json": (zmtp_greeting() + zmtp_ready(b"REP"), b"\x01\x00" + b"\x00\x0bnot json!!!"),
    "json_array": (zmtp_greeting() + zmtp_ready(b"REP"), b"\x01\x00\x00\x02[]"),
}


@pytest.fixture()
def hostile_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A TCP server on a random port that answers every connection with ``request.param``."""
    on_accept, on_request = HOSTILE_REPLIES[request.param]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()
    connections: list[socket.socket] = []

    def handle(conn: socket.socket) -> None:
        conn.settimeout(0.1)
        received = 0
        replied = False
        try:
            conn.sendall(on_accept)
            while not stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                received += len(chunk)
                if on_request and not replied and received > CLIENT_HANDSHAKE_BYTES:
                    conn.sendall(on_request)
                    replied = True
        except OSError:
            return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            connections.append(conn)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in connections:
            conn.close()


# --------------------------------------------------------------------- static checks


def test_mono_missing_fails_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(
        pytest.fail.Exception, match="apt-get install -y --no-install-recommends mono-mcs"
    ):
        require_tool("mcs")


def test_strategy_compiles_against_ninjatrader_api_stubs(tmp_path: Path) -> None:
    """Every file, strategy class included, at C# 5 against the NT8 API model."""
    result = compile_cs(
        tmp_path / "strategy.dll",
        [HARNESS_DIR / "NinjaTraderStubs.cs", STRATEGY_SOURCE, *ADDON_SOURCES],
        "-target:library",
        "-r:System.Xml.dll",
        "-warnaserror+",
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("original", "mistake"),
    [
        (
            "SetStopLoss(activeSignal, CalculationMode.Price,",
            "SetStopLoss(activeSignal, CalculationMode.Prices,",
        ),
        ("EnterLong(Quantity, signal)", "EnterLong(signal, Quantity)"),
        ("Instrument.MasterInstrument.TickSize", "Instrument.TickSize"),
        ("Bars.GetVolume(i)", "Bars.GetVolumes(i)"),
        ("GetCurrentBid()", "GetCurrentBidPrice()"),
        ("PositionAccount.MarketPosition", "AccountPosition.MarketPosition"),
        (
            "OnPositionUpdate(Position position, double averagePrice, int quantity,",
            "OnPositionUpdate(Position position, double averagePrice, long quantity,",
        ),
    ],
)
def test_stub_compile_rejects_api_mistakes(tmp_path: Path, original: str, mistake: str) -> None:
    """The stub check is not vacuous: a wrong member or signature fails to compile."""
    source = STRATEGY_SOURCE.read_text()
    assert original in source
    broken = tmp_path / "AITradingBridge.cs"
    broken.write_text(source.replace(original, mistake, 1))
    result = compile_cs(
        tmp_path / "strategy.dll",
        [HARNESS_DIR / "NinjaTraderStubs.cs", broken, *ADDON_SOURCES],
        "-target:library",
        "-r:System.Xml.dll",
    )
    assert result.returncode != 0


def test_strategy_rejects_newer_csharp_than_ninjatrader_accepts(tmp_path: Path) -> None:
    """-langversion:5 really bites: a C# 6 feature in the file fails the build."""
    broken = tmp_path / "AITradingBridge.cs"
    broken.write_text(
        STRATEGY_SOURCE.read_text().replace('Print("AITB " +', 'Print($"AITB {Name}" +', 1)
    )
    result = compile_cs(
        tmp_path / "strategy.dll",
        [HARNESS_DIR / "NinjaTraderStubs.cs", broken, *ADDON_SOURCES],
        "-target:library",
        "-r:System.Xml.dll",
    )
    assert result.returncode != 0


def test_ninjatrader_folder_references_no_third_party_dll() -> None:
    files = [p for p in NINJATRADER_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert STRATEGY_SOURCE in files
    assert not [p for p in files if p.suffix.lower() == ".dll"]
    pattern = re.compile(r"netmq|asyncio|nacl", re.IGNORECASE)
    offenders = {str(p): pattern.findall(p.read_text(errors="replace")) for p in files}
    assert not {k: v for k, v in offenders.items() if v}


def test_only_the_strategy_file_touches_ninjatrader_types() -> None:
    """The helpers compile without NinjaTrader (the harness build proves it); the strategy
    file holds the strategy class and nothing else at namespace level."""
    for path in ADDON_SOURCES:
        text = path.read_text()
        assert "namespace NinjaTrader.NinjaScript.AddOns.AITradingBridgeClient" in text, path
        assert "using NinjaTrader.Cbi" not in text and "Strategies" not in text, path
    strategy = STRATEGY_SOURCE.read_text()
    assert "namespace NinjaTrader.NinjaScript.Strategies\n" in strategy
    type_pattern = r"^    (?:public |internal )?\S*\s*(?:class|struct|enum) (\w+)"
    declared = re.findall(type_pattern, strategy, re.M)
    assert declared == ["AITradingBridge"]


# ------------------------------------------------------------------------- pure parts


def test_json_writer_and_reader_self_checks(harness: Path) -> None:
    events = run_harness(harness, "json")
    checks = events_of(events, "check")
    assert len(checks) > 30
    assert [c for c in checks if not c["ok"]] == []


def test_json_writer_output_parses_in_python_exactly(harness: Path) -> None:
    (sample,) = events_of(run_harness(harness, "json"), "json_sample")
    assert json.loads(sample["text"]) == {
        "text": 'quote" backslash\\ slash/ nl\n cr\r tab\t bell\x07 nul\x00 e\u00e9 euro\u20ac '
        "emoji\U0001f600 del\x7f",
        "price": 21000.25,
        "tiny": 1e-07,
        "third": 1.0 / 3.0,
        "big": 9007199254740993,
        "neg": -42,
        "yes": True,
        "no": False,
        "nothing": None,
        "list": [1, 2.5, "x", {}, []],
        "time": "2025-01-02T03:04:05.678",
    }


def test_guard_refuses_what_the_strategy_must_not_execute(harness: Path) -> None:
    checks = events_of(run_harness(harness, "rules"), "check")
    assert len(checks) == 23
    assert [c for c in checks if not c["ok"]] == []


def test_trailing_stop_matches_env_execution(harness: Path) -> None:
    """AitbTrail.NextStop is env/execution.py's trailed_stop, bit for bit."""
    from env.execution import trailed_stop

    rng = random.Random(20251107)
    cases = []
    for _ in range(400):
        tick = rng.choice([0.25, 0.1, 0.01, 1.0, 0.03125])
        side = rng.choice([1, -1])
        close = round(rng.uniform(50, 25000) / tick) * tick
        best = close + side * rng.randint(0, 80) * tick + rng.choice([0.0, tick / 3])
        stop = close - side * rng.randint(1, 120) * tick
        distance = rng.randint(1, 60) * tick
        cases.append((side, stop, best, distance, close, tick))
    stdin = "".join(
        " ".join(repr(float(v)) if i else str(v) for i, v in enumerate(c)) + "\n" for c in cases
    )
    result = subprocess.run(
        [require_tool("mono"), str(harness), "trail"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    got = [float(line) for line in result.stdout.split()]
    expected = [
        trailed_stop(side, stop, best, dist, close, tick)
        for side, stop, best, dist, close, tick in cases
    ]
    assert got == expected


def test_transport_frames_roundtrip_through_libzmq(harness: Path, echo_endpoint: str) -> None:
    """Short (1-byte size) and long (8-byte size) frames both ways, on one connection."""
    echoes = events_of(run_harness(harness, "echo", echo_endpoint), "echo")
    assert [e["size"] for e in echoes] == [1, 2, 254, 255, 256, 257, 1000, 65535, 65536, 300000]
    assert all(e["identical"] for e in echoes), echoes
    assert echoes[-1]["connections"] == 1, "a healthy REQ connection is reused"


# ------------------------------------------------------------------- the real daemon


def test_session_against_daemon_decides_every_bar(harness: Path, daemon: Daemon) -> None:
    events = run_harness(
        harness, "session", daemon.endpoint, "client=pytest-session", "history=200", "bars=300"
    )
    (start,) = events_of(events, "start")
    assert start["ok"] and start["ready"]
    assert 0 < start["warmup_bars"] <= 200
    decisions = events_of(events, "decision")
    assert len(decisions) == 300
    for d in decisions:
        assert_decision_valid(d)
        assert d["attempts"] == 1 and not d["resynced"] and not d["warming_up"]
    assert_consecutive_seqs(events)
    positions = events_of(events, "position")
    assert positions and all(p["outcome"] == "ok" for p in positions)
    in_position = [d for d in decisions if d["side"] != 0]
    assert len(in_position) >= 20, "the run must exercise the in-position mask"
    assert {d["side"] for d in in_position} <= {1, -1}
    (summary,) = events_of(events, "summary")
    assert summary["hello_count"] == 1 and summary["connections"] == 1
    assert summary["guarded"] == 0


def test_retried_bar_request_gets_the_byte_identical_reply(harness: Path, daemon: Daemon) -> None:
    """What the Lazy Pirate retry relies on: same client + seq -> the cached reply."""
    events = run_harness(harness, "session", daemon.endpoint, "client=pytest-retry", "bars=60")
    (summary,) = events_of(events, "summary")
    last = events_of(events, "decision")[-1]
    assert json.loads(summary["last_request"])["seq"] == last["seq"]
    assert daemon.request(summary["last_request"]) == last["raw"].encode()


def test_worker_delivers_decisions_in_order(harness: Path, daemon: Daemon) -> None:
    (result,) = events_of(
        run_harness(harness, "worker", daemon.endpoint, "client=pytest-worker", "bars=20"), "worker"
    )
    assert result["complete"]
    jobs = result["jobs"]
    assert [j["bar_index"] for j in jobs] == list(range(20))
    assert all(j["outcome"] == "ok" for j in jobs)
    assert [j["seq"] for j in jobs] == list(range(jobs[0]["seq"], jobs[0]["seq"] + 20))


@pytest.mark.skipif(os.name != "posix", reason="freezes the daemon with SIGSTOP (POSIX)")
def test_frozen_daemon_answers_the_retry_without_deciding_twice(
    harness: Path, daemon: Daemon
) -> None:
    """SIGSTOP the daemon while a request is out: the client times out, reconnects,
    pings (the daemon did not restart, so no hello), and resends the same seq."""
    control = SessionControl(
        harness,
        daemon.endpoint,
        "client=pytest-frozen",
        "bars=80",
        "pause_after=40",
        "timeout=400",
        "tries=15",
    )
    try:
        pause = control.read_until_pause()
        daemon.signal(signal.SIGSTOP)
        control.resume()
        time.sleep(1.5)
        daemon.signal(signal.SIGCONT)
        events, _ = control.finish()
    finally:
        daemon.signal(signal.SIGCONT)
        control.close()
    after = events[events.index(pause) + 1 :]
    first = after[0]
    assert first["seq"] == pause["last_seq"] + 1, "the retry keeps the request's seq"
    assert first["outcome"] == "ok" and first["attempts"] >= 2
    assert not first["resynced"], "a daemon that did not restart keeps our state"
    assert_consecutive_seqs(events)
    decisions = events_of(events, "decision")
    assert len(decisions) == 80
    for d in decisions:
        assert_decision_valid(d)
        assert not d["warming_up"]
    (summary,) = events_of(events, "summary")
    assert summary["hello_count"] == 1
    entries = daemon.journal_for("pytest-frozen", first["seq"])
    assert [e["retry"] for e in entries] in ([False], [False, True]), "handled once, at most"
    assert all(e["reply"] == json.loads(first["raw"]) for e in entries), "one and the same reply"


def test_daemon_restart_recovers_with_same_seq_and_resent_history(
    harness: Path, tmp_path: Path
) -> None:
    """Kill -9 the daemon and start a new one on the same port: the pending request is
    retried with its seq; the client sees the restart (uptime), sends hello + history,
    and the new daemon decides that bar with a full feature window (not warming up)."""
    port = free_port()
    first = Daemon(port, tmp_path / "first").start()
    second = Daemon(port, tmp_path / "second")
    control = SessionControl(
        harness,
        first.endpoint,
        "client=pytest-restart",
        "bars=60",
        "pause_after=30",
        "timeout=500",
        "tries=120",
    )
    try:
        pause = control.read_until_pause()
        first.kill()
        control.resume()
        time.sleep(1.0)  # at least one try fails against the dead port
        second.start()
        events, log = control.finish(timeout=DAEMON_START_TIMEOUT_S + HARNESS_TIMEOUT_S)
    finally:
        control.close()
        first.kill()
        second.stop()
    after = events[events.index(pause) + 1 :]
    recovered = after[0]
    assert recovered["seq"] == pause["last_seq"] + 1, "the retry keeps the request's seq"
    assert recovered["outcome"] == "ok" and recovered["attempts"] >= 2
    assert recovered["resynced"], "hello + history were resent to the new daemon"
    assert "daemon restarted" in log
    assert_consecutive_seqs(events)
    decisions = events_of(events, "decision")
    assert len(decisions) == 60
    first_after = next(e for e in after if e["event"] == "decision")
    assert not first_after["warming_up"], "the resent history rebuilt the feature window"
    for d in decisions:
        assert_decision_valid(d)
    (summary,) = events_of(events, "summary")
    assert summary["hello_count"] == 2
    assert first.journal_for("pytest-restart", recovered["seq"]) == []
    assert [e["retry"] for e in second.journal_for("pytest-restart", recovered["seq"])] == [False]
    seen = [(e["request"].get("type"), e["request"].get("seq")) for e in second.journal()]
    hello, history = seen.index(("hello", None)), seen.index(("history", None))
    request_type = {"decision": "bar", "position": "position"}[recovered["event"]]
    assert hello < history < seen.index((request_type, recovered["seq"]))


def test_strategy_class_with_two_instances_trades_against_the_real_daemon(
    sim: Path, daemon: Daemon, tmp_path: Path
) -> None:
    """The real strategy class on the NinjaTrader double (test_ninjatrader_lifecycle.py):
    Sim101 and a live account on the same chart type, one daemon. Both say hello with
    the v1.1 fields and get every bar decided (no out_of_order from a shared client id),
    with times in UTC."""
    history = quiet_bars(datetime(2025, 11, 7, 9, 31), 200)
    live = quiet_bars(history[-1].time + timedelta(minutes=1), 5)
    scenario = Scenario(
        daemon.endpoint,
        tmp_path,
        instances=[("A", "Sim101"), ("B", "Live1")],
        timezone="America/New_York",
        history=history,
        live=live,
        props={"A": {"TimeoutMs": 5000}, "B": {"TimeoutMs": 5000}},
    )
    run = scenario.run(sim, timeout=120)
    clients = {"nt8-Sim101-NQ-1Minute", "nt8-Live1-NQ-1Minute"}
    journal = [e for e in daemon.journal() if e.get("request", {}).get("client") in clients]
    hellos = [e for e in journal if e["request"]["type"] == "hello"]
    assert len(hellos) == 2 and all(e["reply"]["ok"] for e in hellos)
    assert {e["request"]["account"] for e in hellos} == {"Sim101", "Live1"}
    bars = [e for e in journal if e["request"]["type"] == "bar"]
    assert len(bars) == 2 * len(live)
    assert {e["request"]["client"] for e in bars} == clients
    assert all(e["request"]["bar"]["time"].endswith("Z") for e in bars)
    assert all(e["reply"]["ok"] for e in bars), [e["reply"] for e in bars]
    assert all(e["reply"]["mask"] in (FLAT_MASK, IN_POSITION_MASK) for e in bars)
    assert [e for e in run if e["event"] == "strategy_stopped"] == []


# ----------------------------------------------------- unreachable or hostile peers


TIMEOUT_MS = 300
TRIES = 3
# Start (hello) and the bar each make at most TRIES tries of at most TIMEOUT_MS.
GIVE_UP_BOUND_MS = 2 * TRIES * TIMEOUT_MS + 1500


def probe(harness: Path, endpoint: str) -> dict[str, Any]:
    (result,) = events_of(
        run_harness(
            harness, "probe", endpoint, f"timeout={TIMEOUT_MS}", f"tries={TRIES}", timeout=30
        ),
        "probe",
    )
    return result


@pytest.mark.parametrize("hostile_server", sorted(HOSTILE_REPLIES), indirect=True)
def test_hostile_peer_is_a_failed_try_not_a_hang(harness: Path, hostile_server: str) -> None:
    result = probe(harness, hostile_server)
    assert not result["started"]
    assert (result["outcome"], result["name"], result["action"]) == ("unreachable", "HOLD", 0)
    assert result["attempts"] == TRIES
    assert result["connections"] >= 2 * TRIES, "every failed try closes the socket and reconnects"
    assert result["elapsed_ms"] < GIVE_UP_BOUND_MS


def test_dead_port_gives_up_as_hold_in_bounded_time(harness: Path) -> None:
    result = probe(harness, f"tcp://127.0.0.1:{free_port()}")
    assert (result["outcome"], result["name"]) == ("unreachable", "HOLD")
    assert result["attempts"] == TRIES
    # Each try keeps reconnecting for its whole timeout, as a ZeroMQ socket would.
    assert 0.5 * 2 * TRIES * TIMEOUT_MS < result["elapsed_ms"] < GIVE_UP_BOUND_MS


def test_worker_never_blocks_the_caller_when_daemon_is_down(harness: Path) -> None:
    (result,) = events_of(
        run_harness(
            harness, "worker", f"tcp://127.0.0.1:{free_port()}", "bars=4", "timeout=200", "tries=2"
        ),
        "worker",
    )
    assert result["enqueue_ms"] < 50, "Enqueue* must return at once, whatever the network does"
    assert result["complete"]
    assert [j["bar_index"] for j in result["jobs"]] == [0, 1, 2, 3]
    assert {j["outcome"] for j in result["jobs"]} == {"unreachable"}
    assert {j["name"] for j in result["jobs"]} == {"HOLD"}
    assert result["stop_ms"] < 1000
