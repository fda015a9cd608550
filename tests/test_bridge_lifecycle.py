"""The daemon's life: signals, reload, monitoring, the journal, the replay client and
the command line."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq
from bridge_helpers import (
    NEW_PROCESS_GROUP,
    STOP_SIGNALS,
    Client,
    bar_message,
    history_message,
    running_server,
    serve_config,
    tiny_bars,
)
from click.testing import CliRunner
from structlog.testing import capture_logs

from ai_trading_bridge import cli
from bridge.config import ModelSource, MonitorConfig, ServeConfig
from bridge.dispatch import Decision, Dispatcher, Outcome
from bridge.journal import read_journal
from bridge.monitoring import Monitor
from bridge.replay import ReplayConfig, run_replay
from bridge.server import BridgeServer, ServeError, control_request
from env.config import WARMUP_BARS

pytest_plugins = ["bridge_helpers"]

ROOT = Path(__file__).resolve().parent.parent
BARS = tiny_bars()
EXIT_DEADLINE_S = 2.0
MONITOR_WARNINGS = {"hold_share_out_of_band", "action_share_high", "pm_action_while_flat"}


# -- signals (a real daemon process) ---------------------------------------------------


def start_daemon(bundle: Path, tmp_path: Path) -> tuple[subprocess.Popen, str, Path]:
    log_file = tmp_path / "daemon.log"
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
            "--histogram-every",
            "10",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        creationflags=NEW_PROCESS_GROUP,  # Windows sends Ctrl+Break only to a group
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if log_file.exists():
            for line in log_file.read_text().splitlines():
                event = json.loads(line)
                if event["event"] == "serving":
                    return process, event["endpoint"], log_file
        if process.poll() is not None:
            raise AssertionError(f"the daemon exited with {process.returncode}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the daemon did not start within 90 s")


@pytest.mark.parametrize("signum", list(STOP_SIGNALS.values()), ids=list(STOP_SIGNALS))
def test_signal_stops_the_daemon_with_exit_0_within_2_s(
    tiny_bundle, tmp_path, signum, restore_logging
) -> None:
    process, endpoint, log_file = start_daemon(tiny_bundle, tmp_path)
    pings = 0
    try:
        result = run_replay(
            BARS, ReplayConfig(endpoint=endpoint, history=WARMUP_BARS, max_bars=100)
        )
        assert result.missed == result.errors == 0
        if hasattr(signal, "SIGHUP"):
            process.send_signal(signal.SIGHUP)  # reload the same files while serving
            client = Client(endpoint)
            pings = 0
            deadline = time.monotonic() + 60
            while "model_reloaded" not in log_file.read_text():  # loads on another thread
                assert client.ask({"v": 1, "type": "ping"})["ok"]
                pings += 1
                assert time.monotonic() < deadline, "the reload did not finish"
                time.sleep(0.01)
            client.close()
        started = time.monotonic()
        process.send_signal(signum)
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < EXIT_DEADLINE_S
    finally:
        if process.poll() is None:
            process.kill()
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names.count("decision") == 100 and names[-1] == "stopped"
    assert names.count("action_histogram") == 100 // 10
    if hasattr(signal, "SIGHUP"):
        assert "model_reloaded" in names
    journal = read_journal(next((tmp_path / "journal").glob("journal-*.jsonl")))
    assert len(journal) == 1 + 1 + 100 + (
        pings if hasattr(signal, "SIGHUP") else 0
    )  # hello, history, bars, pings
    runner = CliRunner()
    shown = runner.invoke(cli, ["monitor", "--once", str(log_file)])
    assert shown.exit_code == 0, shown.output
    assert "p50" in shown.output and "MOVE_TO_BE" in shown.output and "NQ 12-25" in shown.output


# -- reload ----------------------------------------------------------------------------


def copy_bundle(bundle: Path, folder: Path, version: str) -> Path:
    shutil.copytree(bundle, folder)
    card = json.loads((folder / "model.json").read_text())
    card["version"] = version
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def test_bad_reload_keeps_serving_and_a_good_one_swaps(tiny_bundle, tiny_policy, tmp_path) -> None:
    broken = copy_bundle(tiny_bundle, tmp_path / "broken", "broken")
    (broken / "model.zip").write_bytes(b"not a zip")
    newer = copy_bundle(tiny_bundle, tmp_path / "newer", "tiny-newer")
    with (
        capture_logs() as logs,
        running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server,
    ):
        client = Client(server.endpoint)
        client.ask(history_message(BARS, 0, WARMUP_BARS))
        token = server.token
        bad = control_request(
            server.control_endpoint, {"type": "reload", "bundle": str(broken), "token": token}
        )
        assert bad["ok"] is False and "not a stable-baselines3 model zip" in bad["error"]
        assert bad["model"]["version"] == tiny_policy.version
        reply = client.ask(bar_message(BARS, WARMUP_BARS, seq=1))
        assert reply["ok"] and reply["model_version"] == tiny_policy.version
        good = control_request(
            server.control_endpoint, {"type": "reload", "bundle": str(newer), "token": token}
        )
        assert good["ok"] is True and good["model"]["version"] == "tiny-newer"
        assert good["previous"]["version"] == tiny_policy.version
        reply = client.ask(bar_message(BARS, WARMUP_BARS + 1, seq=2))
        assert reply["model_version"] == "tiny-newer" and reply["warming_up"] is False
        hello = client.ask({"v": 1, "type": "hello", "client": "c", "instrument": "NQ 12-25"})
        assert hello["model"]["version"] == "tiny-newer"
        status = control_request(server.control_endpoint, {"type": "status", "token": token})
        assert status["ok"] and status["source"]["bundle"] == str(newer)
        client.close()
    failed = [e for e in logs if e["event"] == "reload_failed"]
    assert failed and failed[0]["serving"] == tiny_policy.version
    assert any(e["event"] == "model_reloaded" for e in logs)


def test_reload_of_a_model_of_another_bar_period_is_refused(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    """The connected charts send bars of the served model's period (hello checked it): a
    daily model reloaded under them would decide on 1-minute bars. The daemon keeps
    serving the model it has and says why, and the reply names the way out."""
    daily = copy_bundle(tiny_bundle, tmp_path / "daily", "tiny-daily")
    card = json.loads((daily / "model.json").read_text())
    card["bar_period"] = {"type": "day", "value": 1}
    (daily / "model.json").write_text(json.dumps(card))
    same = copy_bundle(tiny_bundle, tmp_path / "same", "tiny-60s")
    card = json.loads((same / "model.json").read_text())
    card["bar_period"] = {"type": "second", "value": 60}  # one minute, written otherwise
    (same / "model.json").write_text(json.dumps(card))
    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        client = Client(server.endpoint)
        client.ask(history_message(BARS, 0, WARMUP_BARS))
        token = server.token
        refused = control_request(
            server.control_endpoint, {"type": "reload", "bundle": str(daily), "token": token}
        )
        assert refused["ok"] is False and refused["model"]["version"] == tiny_policy.version
        assert "trained on 1-day bars" in refused["error"]
        assert "serves 1-minute bars" in refused["error"] and "another daemon" in refused["error"]
        reply = client.ask(bar_message(BARS, WARMUP_BARS, seq=1))
        assert reply["ok"] and reply["model_version"] == tiny_policy.version
        accepted = control_request(
            server.control_endpoint, {"type": "reload", "bundle": str(same), "token": token}
        )
        assert accepted["ok"] is True and accepted["model"]["version"] == "tiny-60s"
        client.close()


def test_reload_command_reports_success_and_failure(tiny_bundle, tiny_policy, tmp_path) -> None:
    runner = CliRunner()
    state = ["--state-dir", str(tmp_path / "state")]
    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        ok = runner.invoke(cli, ["reload", "--endpoint", server.endpoint, *state])
        assert ok.exit_code == 0 and f"serving {tiny_policy.version}" in ok.output
        (tmp_path / "no-model").mkdir()  # there, but the daemon finds no model in it
        bad = runner.invoke(
            cli,
            [
                *("reload", "--control", server.control_endpoint, *state),
                *("--bundle", str(tmp_path / "no-model")),
            ],
        )
        assert (
            bad.exit_code == 1 and "reload failed" in bad.output and "still serving" in bad.output
        )
        status = runner.invoke(
            cli, ["reload", "--control", server.control_endpoint, "--status", *state]
        )
        assert (
            status.exit_code == 0
            and json.loads(status.output)["model"]["version"] == tiny_policy.version
        )


def test_reload_command_without_a_daemon_fails_fast(tmp_path) -> None:
    with zmq.Context() as context, context.socket(zmq.REP) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
    state = tmp_path / "state"
    args = ["reload", "--endpoint", f"tcp://127.0.0.1:{port}", "--state-dir", str(state)]
    result = CliRunner().invoke(cli, [*args, "--timeout", "0.3"])
    assert result.exit_code == 1 and "no daemon serving" in result.output
    # A file left by a daemon that died: the control endpoint does not answer.
    from bridge.server import daemon_file

    path = daemon_file(state, f"tcp://127.0.0.1:{port}")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"control": f"tcp://127.0.0.1:{port}", "token": "x"}))
    result = CliRunner().invoke(cli, [*args, "--timeout", "0.3"])
    assert result.exit_code == 1 and "no reply" in result.output
    assert result.stdout == ""  # no log line from the control client
    assert result.stderr.splitlines()[-1].startswith("error: no reply to the reload")


def test_taken_default_control_port_is_a_warning_and_an_explicit_one_an_error(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    with zmq.Context() as context, context.socket(zmq.REP) as squatter:
        port = squatter.bind_to_random_port("tcp://127.0.0.1")
        endpoint = f"tcp://127.0.0.1:{port}"
        config = serve_config(tiny_bundle, tmp_path, control=endpoint, control_required=False)
        with capture_logs() as logs, running_server(config, tiny_policy) as server:
            assert server.control is None
            assert Client(server.endpoint).ask({"v": 1, "type": "ping"})["ok"]
        assert any(e["event"] == "control_socket_disabled" for e in logs)
        strict = serve_config(tiny_bundle, tmp_path, control=endpoint, control_required=True)
        with pytest.raises(ServeError, match="control"):
            running_server(strict, tiny_policy).__enter__()


def test_control_endpoint_must_be_loopback(tiny_bundle) -> None:
    with pytest.raises(ValueError, match="loopback"):
        ServeConfig(control="tcp://0.0.0.0:5556", model=ModelSource(bundle=tiny_bundle))


# -- monitoring ------------------------------------------------------------------------


def test_histogram_is_logged_as_structured_fields_every_n_bars(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    for every in (1, 7):
        config = serve_config(tiny_bundle, tmp_path, monitor=MonitorConfig(every=every))
        with capture_logs() as logs, running_server(config, tiny_policy) as server:
            run_replay(
                BARS, ReplayConfig(endpoint=server.endpoint, history=WARMUP_BARS, max_bars=120)
            )
        decisions = [e for e in logs if e["event"] == "decision"]
        histograms = [e for e in logs if e["event"] == "action_histogram"]
        assert len(decisions) == 120
        # A histogram after every `every`-th decision, and after any decision that warned.
        count, warned, logged_at = 0, set(), []
        for event in logs:
            if event["event"] == "decision":
                count += 1
            elif event["event"] in MONITOR_WARNINGS:
                warned.add(count)
            elif event["event"] == "action_histogram":
                logged_at.append(count)
        expected = {n for n in range(1, 121) if n % every == 0} | (warned - {0})
        assert logged_at == sorted(expected)
        last = histograms[-1]
        assert last["bars"] == 100 and sum(last["counts"].values()) == 100
        assert last["flat_bars"] + last["position_bars"] == 100
        assert sum(last["flat_counts"].values()) == last["flat_bars"]
        assert last["shares"]["HOLD"] == pytest.approx(last["counts"]["HOLD"] / 100)
        assert set(decisions[0]) >= {
            "client",
            "instrument",
            "seq",
            "time",
            "action",
            "mask",
            "probs",
            "latency_us",
            "model_version",
        }


def outcome(action: int, side: int, seq: int) -> Outcome:
    mask = (1, 1, 1, 0, 0, 0) if side == 0 else (1,) * 6
    decision = Decision(
        "2025-01-06T10:00:00", action, action, side, mask, (1.0,) + (0.0,) * 5, False, False
    )
    return Outcome(
        b"{}",
        ok=True,
        type="bar",
        client="c",
        instrument="NQ",
        seq=seq,
        decision=decision,
        model_version="m",
    )


def feed(monitor: Monitor, pattern: list[tuple[int, int]], times: int) -> list[dict]:
    with capture_logs() as logs:
        for k in range(times):
            action, side = pattern[k % len(pattern)]
            monitor.observe(outcome(action, side, k), 100)
    return [e for e in logs if e["log_level"] == "warning"]


def test_healthy_distribution_raises_no_warning() -> None:
    # 25 bars: HOLD 17 of 20 flat bars (85%), position management on 2 of 5 in position
    healthy = [(0, 0)] * 17 + [(1, 0), (2, 0), (1, 0)] + [(3, 1), (0, 1), (0, 1), (4, 1), (0, 1)]
    assert feed(Monitor(MonitorConfig()), healthy, 300) == []


def test_hold_share_leaving_the_band_is_warned_once_per_window() -> None:
    collapsed = [(1, 0), (2, 0), (0, 0)]  # HOLD a third of flat bars
    warnings = feed(Monitor(MonitorConfig()), collapsed, 300)
    bands = [w for w in warnings if w["event"] == "hold_share_out_of_band"]
    assert len(bands) == 3 and bands[0]["hold_share"] == pytest.approx(1 / 3, abs=0.01)


def test_one_action_taking_over_is_warned() -> None:
    warnings = feed(Monitor(MonitorConfig(max_action_share=0.5)), [(3, 1)] * 3 + [(0, 0)], 200)
    high = [w for w in warnings if w["event"] == "action_share_high"]
    assert high and high[0]["action"] == "MOVE_TO_BE" and high[0]["share"] == 0.75


def test_position_management_while_flat_is_warned() -> None:
    warnings = feed(Monitor(MonitorConfig()), [(4, 0)], 1)
    assert [w["event"] for w in warnings] == ["pm_action_while_flat"]


def test_log_follower_reads_appended_lines_and_survives_truncation(tmp_path) -> None:
    from bridge.monitor import LogFollower

    log_file = tmp_path / "bridge.jsonl"
    follower = LogFollower(log_file)
    assert follower.poll() is False  # no file yet
    decision = json.dumps({"event": "decision", "latency_us": 80, "model_version": "m1"})
    warning = json.dumps({"event": "hold_share_out_of_band", "level": "warning", "client": "c"})
    log_file.write_text(decision + "\n" + warning[:10])  # the second line half written
    assert follower.poll() and follower.state.decisions == 1 and not follower.state.warnings
    with open(log_file, "a") as f:
        f.write(warning[10:] + "\n")
    assert follower.poll() and [w["event"] for w in follower.state.warnings] == [
        "hold_share_out_of_band"
    ]
    assert follower.state.percentiles()["p50"] == 80
    log_file.write_text(decision.replace("m1", "m2") + "\n")  # rotated: shorter file
    assert (
        follower.poll() and follower.state.decisions == 1 and follower.state.model_version == "m2"
    )


# -- journal ---------------------------------------------------------------------------


def test_journal_holds_every_request_and_reply_and_reconstructs_decisions(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    payloads = [
        json.dumps(
            {"v": 1, "type": "hello", "client": "j", "instrument": "NQ 12-25", "seq": 0}
        ).encode(),
        json.dumps(history_message(BARS, 0, WARMUP_BARS, client="j", seq=1)).encode(),
        b"\xff not utf-8",
        b"{broken",
        json.dumps(bar_message(BARS, WARMUP_BARS, seq=2, client="j"))
        .replace('"close": ', '"close": NaN, "c": ')
        .encode(),
        json.dumps(
            bar_message(BARS, WARMUP_BARS, seq=2, client="j"), indent=2
        ).encode(),  # newlines
        *(
            json.dumps(bar_message(BARS, i, seq=i, client="j")).encode()
            for i in range(WARMUP_BARS + 1, WARMUP_BARS + 30)
        ),
    ]
    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        client = Client(server.endpoint)
        replies = [client.raw(p) for p in payloads]
        client.close()
    entries = read_journal(next((tmp_path / "journal").glob("journal-*.jsonl")))
    assert len(entries) == len(payloads)
    assert [json.dumps(e["reply"], separators=(",", ":")).encode() for e in entries] == replies
    assert entries[2]["request_hex"].startswith("ff") and entries[3]["request_text"] == "{broken"
    assert all(isinstance(e["latency_us"], int) and e["model_version"] for e in entries)
    # any decision can be reconstructed: the journal's requests, replayed into a fresh
    # daemon with the same model, give the same replies byte for byte
    fresh = Dispatcher(
        tiny_policy,
        exchange_tz=__import__("zoneinfo").ZoneInfo("America/Chicago"),
        max_message_bytes=1 << 20,
        max_sessions=16,
    )
    for entry, reply in zip(entries, replies):
        if "request" in entry:
            assert fresh.handle(json.dumps(entry["request"]).encode()).reply == reply


def test_journal_rotates_by_utc_day(tmp_path) -> None:
    from datetime import datetime, timezone

    from bridge.journal import Journal

    days = iter(
        [
            datetime(2025, 11, 7, 23, 59, 59, tzinfo=timezone.utc),
            datetime(2025, 11, 8, 0, 0, 1, tzinfo=timezone.utc),
        ]
    )
    journal = Journal(tmp_path / "journal", clock=lambda: next(days))
    done = Outcome(b'{"v":1,"type":"ping","ok":true,"seq":null}', ok=True, type="ping")
    journal.record(b'{"v": 1, "type": "ping"}', done, 12)
    journal.record(b'{"v": 1, "type": "ping"}', done, 13)
    journal.close()
    first = read_journal(tmp_path / "journal" / "journal-2025-11-07.jsonl")
    second = read_journal(tmp_path / "journal" / "journal-2025-11-08.jsonl")
    assert [e["latency_us"] for e in first + second] == [12, 13]
    assert first[0]["request"] == {"v": 1, "type": "ping"} and first[0]["reply"]["ok"] is True


def test_journal_write_failure_is_logged_and_every_request_still_answered(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    """The journal breaks while serving (its folder replaced by a file): each request is
    still answered, and each failed line is an error in the log."""
    folder = tmp_path / "journal"
    config = serve_config(tiny_bundle, tmp_path, journal_dir=folder)
    with capture_logs() as logs, running_server(config, tiny_policy) as server:
        client = Client(server.endpoint)
        assert client.ask({"v": 1, "type": "ping", "seq": 0})["seq"] == 0  # journaled
        assert server.journal is not None
        server.journal.close()  # between requests: the next line reopens the folder
        shutil.rmtree(folder)
        folder.write_text("")
        for k in range(1, 4):
            assert client.ask({"v": 1, "type": "ping", "seq": k})["seq"] == k
        client.close()
    failures = [e for e in logs if e["event"] == "journal_write_failed"]
    assert len(failures) == 3 and {e["log_level"] for e in failures} == {"error"}


def test_unwritable_journal_folder_stops_the_daemon_before_the_model_loads(
    tiny_bundle, tmp_path
) -> None:
    from bridge.journal import JournalError
    from bridge.server import build_server

    (tmp_path / "afile").write_text("")  # a folder under a file: unwritable for root too
    folder = tmp_path / "afile" / "journal"
    loaded = []
    config = serve_config(tiny_bundle, tmp_path, journal_dir=folder)
    with pytest.raises(JournalError, match="--no-journal") as caught:
        build_server(config, loader=lambda source: loaded.append(source))
    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)
    assert loaded == []  # refused at once, not after loading the model


# -- replay client ---------------------------------------------------------------------


class FlakyDaemon:
    """A ROUTER that answers bar requests with HOLD, but ignores the first ``drop`` tries
    of the request with seq ``victim`` (a daemon that is away for a moment)."""

    def __init__(self, victim: int, drop: int) -> None:
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.victim, self.drop, self.seen = victim, drop, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.router.poll(20):
                continue
            identity, empty, raw = self.router.recv_multipart()
            request = json.loads(raw)
            if request["seq"] == self.victim:
                self.seen += 1
                if self.seen <= self.drop:
                    continue
            reply = {"v": 1, "type": request["type"], "ok": True, "seq": request["seq"]}
            if request["type"] == "hello":
                reply["model"] = {"version": "flaky"}
            if request["type"] == "bar":
                reply.update(
                    action=0, name="HOLD", mask=[1, 1, 1, 0, 0, 0], warming_up=False, orders={}
                )
            self.router.send_multipart([identity, empty, json.dumps(reply).encode()])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.router.close(linger=0)
        self.context.term()


@pytest.mark.parametrize(("drop", "missed"), [(1, 0), (2, 0), (5, 1)])
def test_replay_client_retries_lazily_and_acts_as_hold_after_the_last_try(drop, missed) -> None:
    daemon = FlakyDaemon(victim=5, drop=drop)
    try:
        config = ReplayConfig(
            endpoint=f"tcp://127.0.0.1:{daemon.port}",
            history=10,
            max_bars=10,
            timeout_s=0.2,
            retries=3,
        )
        result = run_replay(BARS, config)
    finally:
        daemon.close()
    assert len(result.actions) == 10  # the bars kept flowing
    assert result.missed == missed and result.timeouts == min(drop, 3)
    assert result.actions.count(-1) == missed


def test_replay_without_a_daemon_gives_up_on_hello() -> None:
    with zmq.Context() as context, context.socket(zmq.REP) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
    config = ReplayConfig(endpoint=f"tcp://127.0.0.1:{port}", timeout_s=0.1, retries=2)
    with pytest.raises(ConnectionError, match="hello"):
        run_replay(BARS, config)


def test_replay_command_prints_trades_pnl_and_histogram(
    tiny_bundle, tiny_policy, tmp_path, restore_logging
) -> None:
    data = tmp_path / "bars.csv"
    from env.bars import save_bars_csv

    save_bars_csv(BARS[:400], data)
    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        result = CliRunner().invoke(
            cli, ["replay", str(data), "--endpoint", server.endpoint, "--bundle", str(tiny_bundle)]
        )
    assert result.exit_code == 0, result.output
    assert f"model {tiny_policy.version}: {400 - WARMUP_BARS} bars" in result.output
    assert (
        "trades" in result.output
        and "net PnL" in result.output
        and "DISABLE_TRAIL" in result.output
    )


def test_replay_ctrl_c_prints_the_summary_so_far_and_exits_130(
    tiny_bundle, tiny_policy, tmp_path, restore_logging, monkeypatch
) -> None:
    """Ctrl+C lands while replay waits for a reply (the 50th bar): the 49 bars answered
    before it are summarised, one line says the run was interrupted, exit 130."""
    from bridge import server as server_module
    from env.bars import save_bars_csv

    data = tmp_path / "bars.csv"
    save_bars_csv(BARS[:400], data)
    real_request = server_module.LazyPirateClient.request
    calls = []

    def request(self, payload: bytes):  # type: ignore[no-untyped-def]
        calls.append(json.loads(payload)["type"])
        if calls.count("bar") == 50:
            raise KeyboardInterrupt
        return real_request(self, payload)

    monkeypatch.setattr(server_module.LazyPirateClient, "request", request)
    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        args = ["replay", str(data), "--endpoint", server.endpoint, "--bundle", str(tiny_bundle)]
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output
    assert result.stdout.startswith(f"model {tiny_policy.version}: 49 bars, ")
    assert "DISABLE_TRAIL" in result.stdout  # the histogram, too
    # (the in-process daemon's log lines share stderr; replay's own line is the last)
    assert result.stderr.splitlines()[-1] == (
        f"interrupted (Ctrl+C) after 49 of {400 - WARMUP_BARS} bars: the summary covers "
        "the bars replayed so far"
    )


def test_replay_that_gets_error_replies_says_why_and_fails(
    tiny_bundle, tiny_policy, tmp_path, restore_logging
) -> None:
    """The same client replayed twice: the second run's bars are not after the first's
    last bar. It must not look like a quiet run with no trades."""
    data = tmp_path / "bars.csv"
    from env.bars import save_bars_csv

    save_bars_csv(BARS[:200], data)
    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        args = ["replay", str(data), "--endpoint", server.endpoint, "--client", "same"]
        assert CliRunner().invoke(cli, args).exit_code == 0
        again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1
    last = again.stderr.splitlines()[-1]
    assert last.startswith(f"error: {200 - WARMUP_BARS} of {200 - WARMUP_BARS} bars got no ")
    assert "(first: out_of_order: bar.time" in last


@pytest.mark.parametrize(
    ("option", "shift_h"),
    [([], 0), (["--data-timezone", "America/Chicago"], 1)],
)
def test_replay_reads_data_on_the_cards_clock(
    option, shift_h, tiny_bundle, tiny_policy, tmp_path, restore_logging
) -> None:
    """A file written on a New York clock, for a model whose card records that zone: the
    daemon gets the Chicago bar times training saw, unless --data-timezone overrides."""
    import datetime as dt

    bundle = tmp_path / "ny-model"
    shutil.copytree(tiny_bundle, bundle)
    card = json.loads((bundle / "model.json").read_text(encoding="utf-8"))
    card.setdefault("data", {})["data_timezone"] = "America/New_York"
    (bundle / "model.json").write_text(json.dumps(card), encoding="utf-8")
    bars = BARS[:150]
    data = tmp_path / "ny.csv"
    with open(data, "w", encoding="utf-8") as f:
        f.write("time,open,high,low,close,volume\n")
        for i in range(len(bars)):
            chicago = dt.datetime.fromisoformat(str(bars.time[i]))
            new_york = chicago + dt.timedelta(hours=1)  # January: both on standard time
            row = (bars.open[i], bars.high[i], bars.low[i], bars.close[i], bars.volume[i])
            f.write(f"{new_york.isoformat()},{','.join(repr(float(v)) for v in row)}\n")
    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        args = ["replay", str(data), "--endpoint", server.endpoint, "--bundle", str(bundle)]
        result = CliRunner().invoke(cli, [*args, *option])
    assert result.exit_code == 0, result.output
    entries = read_journal(next((tmp_path / "journal").glob("journal-*.jsonl")))
    sent = [e["request"]["bar"]["time"] for e in entries if e["request"]["type"] == "bar"]
    expected = [
        (dt.datetime.fromisoformat(str(t)) + dt.timedelta(hours=shift_h)).isoformat()
        for t in bars.time[WARMUP_BARS:]
    ]
    assert sent and sent == expected[: len(sent)]


def test_replay_reads_data_on_the_given_instruments_calendar(restore_logging) -> None:
    """6E hourly bars with some in the daily halt, replayed as 6E: the warning names 6E's
    calendar, not NQ's. No daemon: the warning comes first."""
    data = ROOT / "tests" / "data" / "6E_hourly_zero_volume.Last.txt"
    with zmq.Context() as context, context.socket(zmq.REP) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
    args = ["replay", str(data), "--endpoint", f"tcp://127.0.0.1:{port}"]
    given = ["--instrument", "6E 03-26"]
    result = CliRunner().invoke(cli, [*args, "--timeout", "0.1", "--retries", "1", *given])
    assert result.exit_code == 1, result.output
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert "6E's calendar (CMEGlobex_FX)" in warning and "says the market is closed" in warning
    assert "NQ" not in warning


def test_replay_of_another_contracts_prices_is_refused_before_any_calendar_warning(
    restore_logging,
) -> None:
    """The same 6E bars replayed as the default NQ 12-25: refused for what they are
    (exit 2 naming --instrument), not warned about as a time-zone problem first."""
    data = ROOT / "tests" / "data" / "6E_hourly_zero_volume.Last.txt"
    result = CliRunner().invoke(cli, ["replay", str(data), "--endpoint", "tcp://127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("error: --instrument: ") and "another contract's prices" in line


def test_replay_declares_its_bar_period_as_ninjatrader_does(
    tiny_bundle, tiny_policy, tmp_path, restore_logging
) -> None:
    """Hourly bars on a 1-minute model: NinjaTrader's hello (with its bar period) is
    refused, so replay's must be too, not served bar after bar."""
    import datetime as dt

    data = tmp_path / "hourly.csv"
    start = dt.datetime(2025, 1, 6, 8, 0)
    with open(data, "w", encoding="utf-8") as f:
        f.write("time,open,high,low,close,volume\n")
        for i in range(150):
            row = (BARS.open[i], BARS.high[i], BARS.low[i], BARS.close[i], BARS.volume[i])
            when = (start + dt.timedelta(hours=i)).isoformat()
            f.write(f"{when},{','.join(repr(float(v)) for v in row)}\n")
    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        args = ["replay", str(data), "--endpoint", server.endpoint, "--bundle", str(tiny_bundle)]
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: hello: bad_message: this chart's bars are 60-minute")


def test_replay_accepts_a_deploy_target_as_bundle(
    tiny_bundle, tiny_policy, tmp_path, restore_logging
) -> None:
    from env.bars import save_bars_csv

    data = tmp_path / "bars.csv"
    save_bars_csv(BARS[:200], data)
    target = tmp_path / "deployed"
    shutil.copytree(tiny_bundle, target / "bundles" / "v1")
    (target / "current.json").write_text(json.dumps({"path": "bundles/v1"}), encoding="utf-8")
    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        args = ["replay", str(data), "--endpoint", server.endpoint, "--bundle", str(target)]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert f"model {tiny_policy.version}: {200 - WARMUP_BARS} bars" in result.output
        result = CliRunner().invoke(cli, [*args[:-1], str(tmp_path / "nothing-here")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "nothing-here is not a model bundle or deploy target" in result.output


# -- command line ----------------------------------------------------------------------


def test_serve_without_a_usable_model_exits_1_with_the_reason(tmp_path, restore_logging) -> None:
    """A folder that is there but holds no model (a missing one is bad input, exit 2:
    tests/test_cli_errors.py)."""
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        cli,
        [
            "serve",
            "--bind",
            "tcp://127.0.0.1:*",
            "--control",
            "none",
            "--no-journal",
            "--bundle",
            str(tmp_path / "empty"),
        ],
    )
    assert result.exit_code == 1 and "model.zip not found" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--control", "tcp://10.0.0.1:5556"], "loopback"),
        (["--bind", "localhost:5555"], "not a ZeroMQ endpoint"),
        (["--model", "NQ_o1_fixed.zip"], "--vecnorm"),
        (["--histogram-every", "0"], "--histogram-every"),
        (["--exchange-tz", "Mars/Olympus"], "time zone"),
    ],
)
def test_serve_refuses_bad_options_before_loading_anything(args, message) -> None:
    result = CliRunner().invoke(cli, ["serve", *args])
    assert result.exit_code == 2 and message in result.output


def test_server_binds_random_ports_and_reports_them(tiny_bundle, tiny_policy, tmp_path) -> None:
    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        assert isinstance(server, BridgeServer)
        assert server.endpoint.startswith("tcp://127.0.0.1:") and not server.endpoint.endswith(":*")
        assert server.control_endpoint != server.endpoint
