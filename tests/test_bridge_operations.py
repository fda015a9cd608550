"""The daemon as an operator runs it: under pipes nobody reads, with closed streams,
killed in the middle of a burst."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
from bridge_helpers import (
    KILLED_STATUS,
    NEW_PROCESS_GROUP,
    STOP_SIGNALS,
    bar_message,
    history_message,
)

from bridge.journal import Journal, read_journal, repair_torn_tail
from env.config import WARMUP_BARS
from env.synthetic import generate_bars

pytest_plugins = ["bridge_helpers"]

ROOT = Path(__file__).resolve().parent.parent
BARS = generate_bars(n_days=5, seed=3)
posix_only = pytest.mark.skipif(os.name != "posix", reason="closing descriptors 1-2 is POSIX")


def launch(bundle: Path, tmp_path: Path, **popen) -> tuple[subprocess.Popen, str]:
    """Start ``serve`` with the given streams; returns the process and its endpoint (read
    from the log file, the one sink that is always there)."""
    log_file = tmp_path / "daemon.log"
    log_file.unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ai_trading_bridge",
            "serve",
            "--bind",
            "tcp://127.0.0.1:*",
            "--bundle",
            str(bundle),
            "--control",
            "none",
            "--journal-dir",
            str(tmp_path / "journal"),
            "--log-file",
            str(log_file),
        ],
        cwd=ROOT,
        creationflags=NEW_PROCESS_GROUP,  # Windows sends Ctrl+Break only to a group
        **popen,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if log_file.exists():
            for line in log_file.read_text().splitlines():
                event = json.loads(line)
                if event["event"] == "serving":
                    return process, event["endpoint"]
        if process.poll() is not None:
            raise AssertionError(f"the daemon exited with {process.returncode}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the daemon did not start within 90 s")


class Req:
    def __init__(self, endpoint: str) -> None:
        self.socket = zmq.Context.instance().socket(zmq.REQ)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def ask(self, message: dict, timeout_ms: int = 3000) -> dict:
        self.socket.send(json.dumps(message).encode())
        assert self.socket.poll(timeout_ms), f"no reply within {timeout_ms} ms"
        return json.loads(self.socket.recv())

    def close(self) -> None:
        self.socket.close(linger=0)


def stop_within(process: subprocess.Popen, limit_s: float = 2.0) -> None:
    started = time.monotonic()
    process.send_signal(next(iter(STOP_SIGNALS.values())))  # SIGTERM; Ctrl+Break on Windows
    try:
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0
    assert time.monotonic() - started < limit_s


def test_unread_stderr_and_stdout_pipes_never_stop_the_replies(tiny_bundle, tmp_path) -> None:
    process, endpoint = launch(
        tiny_bundle, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        client = Req(endpoint)
        assert client.ask(history_message(BARS, 0, WARMUP_BARS, seq=1))["ok"]
        for i in range(WARMUP_BARS, WARMUP_BARS + 5000):
            reply = client.ask(bar_message(BARS, i, seq=i + 1))
            assert reply["ok"] and reply["warming_up"] is False, reply
        client.close()
        stop_within(process)
    finally:
        if process.poll() is None:
            process.kill()
    # 5,000 decision lines are far more than a pipe buffer: the console sink is stuck on
    # its pipe, while the log file (its own queue and thread) kept every decision.
    events = [json.loads(line) for line in (tmp_path / "daemon.log").read_text().splitlines()]
    assert sum(e["event"] == "decision" for e in events) == 5000
    assert events[-1]["event"] == "stopped" and "console" in events[-1]["log_lines_dropped"]


@posix_only
def test_serves_with_stdout_and_stderr_closed(tiny_bundle, tmp_path) -> None:
    def close_streams() -> None:
        os.close(1)
        os.close(2)

    process, endpoint = launch(
        tiny_bundle, tmp_path, stdin=subprocess.DEVNULL, preexec_fn=close_streams
    )
    try:
        client = Req(endpoint)
        assert client.ask({"v": 1, "type": "ping"})["ok"]
        assert client.ask(history_message(BARS, 0, WARMUP_BARS, seq=1))["ok"]
        assert client.ask(bar_message(BARS, WARMUP_BARS, seq=2))["warming_up"] is False
        client.close()
        stop_within(process)
    finally:
        if process.poll() is None:
            process.kill()
    journal = read_journal(next((tmp_path / "journal").glob("journal-*.jsonl")))
    assert [e["request"]["type"] for e in journal] == ["ping", "history", "bar"]


def test_sigkill_in_a_burst_loses_no_replied_request(tiny_bundle, tmp_path) -> None:
    """Killed outright (SIGKILL; TerminateProcess on Windows), the daemon has still
    journaled every request it replied to."""
    rng = random.Random(7)
    replied: list[tuple[str, int]] = []  # (client, seq) of every request that got a reply
    i = WARMUP_BARS
    for round_ in range(3):
        process, endpoint = launch(
            tiny_bundle, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client_id = f"burst-{round_}"  # a fresh stream per daemon life
        socket = zmq.Context.instance().socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(endpoint)
        socket.send(json.dumps(history_message(BARS, 0, WARMUP_BARS, client_id, seq=0)).encode())
        assert socket.poll(5000)
        socket.recv()
        replied.append((client_id, 0))
        kill_after = rng.randint(20, 300)
        try:
            for n in range(1, 10_000):
                if n == kill_after:
                    process.kill()
                socket.send(json.dumps(bar_message(BARS, i, n, client_id)).encode())
                i += 1
                if not socket.poll(1000):
                    break
                socket.recv()
                replied.append((client_id, n))
        finally:
            socket.close(linger=0)
            process.kill()
            process.wait()
        assert process.returncode == KILLED_STATUS
    journal: list[dict] = []
    for path in sorted((tmp_path / "journal").glob("journal-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            journal.append(json.loads(line))  # every line parses on its own
    journaled = {(e["request"]["client"], e["request"].get("seq")) for e in journal}
    assert set(replied) <= journaled


def test_torn_last_line_is_kept_aside_and_the_journal_continues(tiny_policy, tmp_path) -> None:
    from bridge.config import exchange_zone
    from bridge.dispatch import Dispatcher

    folder = tmp_path / "journal"
    journal = Journal(folder)
    dispatcher = Dispatcher(
        tiny_policy,
        exchange_tz=exchange_zone("America/Chicago"),
        max_message_bytes=1 << 20,
        max_sessions=8,
    )
    raw = b'{"v":1,"type":"ping"}'
    journal.record(raw, dispatcher.handle(raw), 5)
    journal.close()
    path = next(folder.glob("journal-*.jsonl"))
    with open(path, "ab") as f:
        f.write(b'{"ts": "2025-11-07T20:31:00Z", "latency_us": 8')  # a write cut short
    restarted = Journal(folder)
    restarted.open()
    assert len(restarted.torn) == 1
    assert restarted.torn[0].read_bytes() == b'{"ts": "2025-11-07T20:31:00Z", "latency_us": 8'
    restarted.record(raw, dispatcher.handle(raw), 5)
    restarted.close()
    assert [e["request"]["type"] for e in read_journal(path)] == ["ping", "ping"]
    assert repair_torn_tail(path) == []  # a whole file is left alone
