"""Risk rails over a real socket: each rail's trigger, the HOLD reply with ``risk``, the
kill switch across restarts, the configuration's validation; and a state-machine test of
the rails themselves."""

from __future__ import annotations

from datetime import datetime, time, timedelta

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
from click.testing import CliRunner
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ai_trading_bridge import cli
from bridge.config import exchange_zone
from bridge.dispatch import Dispatcher
from bridge.journal import read_journal
from env.config import WARMUP_BARS, Action
from env.risk import RailState, RiskConfig, RiskConfigError

pytest_plugins = ["bridge_helpers"]

BARS = tiny_bars()
TIMES = [str(t) for t in BARS.time]
HOLD = [5.0, 0.0, 0.0, 0.0, 0.0, 0.0]
BUY = [0.0, 5.0, 0.0, 0.0, 0.0, 0.0]
MOVE_TO_BE = [0.0, 0.0, 0.0, 5.0, 0.0, 0.0]
FLAT = {"side": 0, "quantity": 0}


def long_at(i: int) -> dict:
    entry = float(BARS.open[i])
    return {
        "side": 1,
        "quantity": 1,
        "entry_price": entry,
        "entry_time": TIMES[i],
        "sl_price": entry - 10.0,
        "tp_price": entry + 20.0,
        "trailing": False,
    }


class Rig:
    """A daemon with a stub model, a client and a running seq."""

    def __init__(self, server, client: Client) -> None:
        self.server, self.client, self.seq = server, client, 0

    def ask(self, message: dict) -> dict:
        self.seq += 1
        return self.client.ask({**message, "seq": self.seq})

    def warm(self, until: int) -> None:
        assert self.ask(history_message(BARS, until - WARMUP_BARS, until))["ready"]

    def bar(self, i: int, position: dict | None = None, **extra) -> dict:
        return self.ask(bar_message(BARS, i, 0, position=position or FLAT, **extra))

    def position(self, position: dict, realized_pnl: float) -> dict:
        message = {"v": 1, "type": "position", "client": "test-client", "instrument": "NQ 12-25"}
        return self.ask({**message, "position": position, "realized_pnl": realized_pnl})


@pytest.fixture
def rig_factory(tiny_bundle, tiny_policy, tmp_path):
    def make(logits=BUY, **risk):
        config = serve_config(tiny_bundle, tmp_path, risk=RiskConfig(**risk))
        return running_server(config, with_actor(tiny_policy, StubActor(logits)))

    return make


def refused(reply: dict, rule: str, model_action: int = Action.BUY) -> bool:
    return (
        reply["ok"]
        and reply["action"] == Action.HOLD
        and reply["orders"] == {}
        and reply["risk"]["rule"] == rule
        and reply["risk"]["model_action"] == model_action
        and bool(reply["risk"]["detail"])
    )


def test_kill_switch_halts_entries_not_management_and_survives_a_restart(
    rig_factory, tmp_path
) -> None:
    state = str(tmp_path / "state")
    with rig_factory() as server:
        rig = Rig(server, Client(server.endpoint))
        rig.warm(100)
        assert rig.bar(100)["name"] == "BUY" and "risk" not in rig.bar(101)
        result = CliRunner().invoke(cli, ["halt", "--state-dir", state, "--reason", "news"])
        assert result.exit_code == 0 and "halted" in result.output
        halted = rig.bar(102)
        assert refused(halted, "kill_switch") and "(news)" in halted["risk"]["detail"]
        rig.client.close()
    with rig_factory(logits=MOVE_TO_BE) as server:  # a restarted daemon is still halted
        rig = Rig(server, Client(server.endpoint))
        hello = rig.ask({"v": 1, "type": "hello", "client": "test-client", "instrument": "NQ"})
        assert hello["risk"]["state"] == "halted" and hello["risk"]["rails"]["kill_switch"]
        rig.warm(200)
        managed = rig.bar(200, long_at(195))
        assert managed["name"] == "MOVE_TO_BE" and "risk" not in managed
        rig.client.close()
    with rig_factory() as server:
        rig = Rig(server, Client(server.endpoint))
        rig.warm(300)
        assert refused(rig.bar(300), "kill_switch")
        assert CliRunner().invoke(cli, ["resume", "--state-dir", state]).exit_code == 0
        assert rig.bar(301)["name"] == "BUY"
        rig.client.close()
    journal = read_journal(next((tmp_path / "journal").glob("journal-*.jsonl")))
    risky = [e for e in journal if e["reply"]["type"] == "bar" and "risk" in e["reply"]]
    assert {e["reply"]["risk"]["rule"] for e in risky} == {"kill_switch"} and len(risky) == 2


def test_halt_reason_and_since_in_hello_status_and_reload_status(rig_factory, tmp_path) -> None:
    import json

    import structlog

    from bridge.killswitch import KillSwitch
    from bridge.server import control_request

    state = tmp_path / "state"
    record, _ = KillSwitch(state).halt("FOMC at 14:00")
    hello_message = {"v": 1, "type": "hello", "client": "test-client", "instrument": "NQ"}
    with rig_factory() as server:
        rig = Rig(server, Client(server.endpoint))
        risk = rig.ask(hello_message)["risk"]
        assert risk["state"] == "halted" and risk["rails"]["kill_switch"] is True
        assert (risk["reason"], risk["since"]) == ("FOMC at 14:00", record["halted_at"])
        status = control_request(
            server.control_endpoint, {"type": "status", "token": server.token}, timeout_s=5
        )
        assert status["risk"]["reason"] == "FOMC at 14:00"
        assert status["risk"]["since"] == record["halted_at"]
        with structlog.testing.capture_logs():  # the daemon's threads log meanwhile
            shown = CliRunner().invoke(
                cli,
                ["reload", "--endpoint", server.endpoint, "--state-dir", str(state), "--status"],
            )
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["risk"]["reason"] == "FOMC at 14:00"
        assert shown.stderr == f"kill switch ON since {record['halted_at']} (FOMC at 14:00)\n"
        KillSwitch(state).resume()
        risk = rig.ask(hello_message)["risk"]
        assert risk["state"] == "active" and "reason" not in risk and "since" not in risk
        with structlog.testing.capture_logs():
            shown = CliRunner().invoke(
                cli,
                ["reload", "--endpoint", server.endpoint, "--state-dir", str(state), "--status"],
            )
        assert shown.exit_code == 0 and shown.stderr == ""
        rig.client.close()


def test_a_multi_line_halt_reason_is_kept_as_typed_and_shown_on_one_line(
    rig_factory, tmp_path
) -> None:
    """Line breaks and control characters in halt --reason stay in the halt file; the
    hello reply, the refusal, reload --status and monitor show the reason on one line."""
    import json

    import structlog

    state = tmp_path / "state"
    typed = "FOMC at 14:00\r\nsee the desk\tchat\x1b[31m\u2028"
    shown = "FOMC at 14:00 see the desk chat [31m"
    halted = CliRunner().invoke(cli, ["halt", "--reason", typed, "--state-dir", str(state)])
    assert halted.exit_code == 0, halted.output
    record = json.loads((state / "halt.json").read_text(encoding="utf-8"))
    assert record["reason"] == typed
    with rig_factory() as server:
        rig = Rig(server, Client(server.endpoint))
        hello = rig.ask({"v": 1, "type": "hello", "client": "test-client", "instrument": "NQ"})
        assert hello["risk"]["reason"] == shown
        rig.warm(100)
        reply = rig.bar(100)
        assert refused(reply, "kill_switch") and f"({shown})" in reply["risk"]["detail"]
        with structlog.testing.capture_logs():  # the daemon's threads log meanwhile
            status = CliRunner().invoke(
                cli,
                ["reload", "--endpoint", server.endpoint, "--state-dir", str(state), "--status"],
            )
        rig.client.close()
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["risk"]["reason"] == shown
    assert status.stderr == f"kill switch ON since {record['halted_at']} ({shown})\n"
    # a log line with the reason as typed (a daemon before this fix logged it so)
    log_file = tmp_path / "daemon.log"
    event = {"event": "kill_switch_engaged", "level": "warning", **record}
    log_file.write_text(json.dumps({**event, "timestamp": "2025-07-07T14:00:00Z"}) + "\n")
    monitored = CliRunner().invoke(cli, ["monitor", "--once", str(log_file)])
    assert monitored.exit_code == 0, monitored.output
    assert f"kill switch ON since {record['halted_at']} ({shown})" in monitored.output
    assert f"reason={shown}" in monitored.output


def test_halt_while_halted_keeps_the_first_since_and_reason_and_says_so(tmp_path) -> None:
    """When and why trading first stopped is what a trader needs: a second halt changes
    neither, and tells the operator the switch was already on (exit 0: it is on)."""
    import json

    state = tmp_path / "state"
    halt = ["halt", "--state-dir", str(state), "--reason"]
    first = CliRunner().invoke(cli, [*halt, "FOMC at 14:00"])
    assert first.exit_code == 0 and first.output.startswith("halted: "), first.output
    written = (state / "halt.json").read_bytes()
    record = json.loads(written)
    second = CliRunner().invoke(cli, [*halt, "desk says stop"])
    assert second.exit_code == 0, second.output
    assert (state / "halt.json").read_bytes() == written
    assert second.output.startswith(
        f"already halted since {record['halted_at']} (FOMC at 14:00); kept as it was"
    )
    assert "desk says stop" not in second.output


def test_halt_over_an_unreadable_halt_file_writes_a_readable_one(tmp_path) -> None:
    """An unreadable file halts (fails closed) but has no time or reason to keep."""
    import json

    state = tmp_path / "state"
    state.mkdir()
    (state / "halt.json").write_text("{not json", encoding="utf-8")
    result = CliRunner().invoke(cli, ["halt", "--state-dir", str(state), "--reason", "news"])
    assert result.exit_code == 0 and result.output.startswith("halted: "), result.output
    record = json.loads((state / "halt.json").read_text(encoding="utf-8"))
    assert record["reason"] == "news" and record["halted_at"]


def test_halt_that_cannot_write_says_which_folder_to_give(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    result = CliRunner().invoke(cli, ["halt", "--state-dir", str(blocker / "state")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = result.output.splitlines()
    assert line.startswith(f"error: cannot write {blocker / 'state' / 'halt.json'} (")
    assert "[Errno" not in line and "give --state-dir a folder this user can write" in line


def test_monitor_once_on_a_file_without_log_lines_says_so(tmp_path) -> None:
    journal = tmp_path / "journal-2025-01-06.jsonl"  # JSON lines, but not log events
    journal.write_text('{"seq": 1, "request": {}, "reply": {}}\n', encoding="utf-8")
    shown = CliRunner().invoke(cli, ["monitor", "--once", str(journal)])
    assert shown.exit_code == 0
    assert f"warning: {journal} holds no daemon log lines" in shown.stderr
    log_file = tmp_path / "daemon.log"
    log_file.write_text('{"event": "serving", "model_version": "m1"}\n', encoding="utf-8")
    shown = CliRunner().invoke(cli, ["monitor", "--once", str(log_file)])
    assert shown.exit_code == 0 and "warning" not in shown.stderr


def test_session_loss_limit_stops_entries_until_the_next_session(rig_factory) -> None:
    with rig_factory(session_loss_limit=500.0) as server:
        rig = Rig(server, Client(server.endpoint))
        rig.warm(100)
        assert rig.bar(100)["name"] == "BUY"
        assert rig.position(long_at(100), -200.0)["ok"]
        assert rig.position(FLAT, -600.0)["ok"]  # the trade lost 400: session -600
        reply = rig.bar(101)
        assert refused(reply, "session_loss") and "-600.00" in reply["risk"]["detail"]
        next_session = TIMES.index(TIMES[0][:8] + "06T17:01:00")  # Monday 17:01
        rig.warm(next_session)
        assert rig.bar(next_session)["name"] == "BUY"
        rig.client.close()


def test_max_entries_per_session(rig_factory) -> None:
    with rig_factory(max_entries_per_session=2) as server:
        rig = Rig(server, Client(server.endpoint))
        rig.warm(100)
        assert [rig.bar(i)["name"] for i in (100, 101)] == ["BUY", "BUY"]
        reply = rig.bar(102)
        assert refused(reply, "max_entries") and "limit 2" in reply["risk"]["detail"]
        rig.client.close()


def test_cooldown_after_consecutive_losses(rig_factory) -> None:
    with rig_factory(cooldown_losses=2, cooldown_bars=3) as server:
        rig = Rig(server, Client(server.endpoint))
        rig.warm(100)
        pnl = 0.0
        for i in (100, 102):
            assert rig.bar(i, FLAT, realized_pnl=pnl)["name"] == "BUY"
            rig.position(long_at(i), pnl)
            pnl -= 100.0
            rig.bar(i + 1, FLAT, realized_pnl=pnl)  # stopped out: one more loss
        replies = [rig.bar(i) for i in range(104, 108)]
        assert [refused(r, "cooldown") for r in replies] == [True, True, False, False]
        assert replies[2]["name"] == "BUY"
        rig.client.close()


def test_trading_window(rig_factory) -> None:
    with rig_factory(trading_window=(time(8, 30), time(15, 0))) as server:
        rig = Rig(server, Client(server.endpoint))
        rig.warm(100)  # 18:41 exchange time
        reply = rig.bar(100)
        assert refused(reply, "trading_window") and "08:30-15:00" in reply["risk"]["detail"]
        inside = TIMES.index(TIMES[0][:8] + "06T09:00:00")
        rig.warm(inside)
        assert rig.bar(inside)["name"] == "BUY"
        rig.client.close()


def test_no_entries_in_the_last_minutes_before_the_close(rig_factory) -> None:
    # The model's own mask already has no entries in its last 15 minutes (the env's rule);
    # the rail refuses what the operator configures beyond that.
    with rig_factory(no_entry_minutes_before_close=30.0) as server:
        rig = Rig(server, Client(server.endpoint))
        early = TIMES.index(TIMES[0][:8] + "06T15:29:00")
        rig.warm(early)
        assert rig.bar(early)["name"] == "BUY"  # 31 minutes to the 16:00 close
        reply = rig.bar(early + 2)
        assert refused(reply, "session_close") and "29 minutes" in reply["risk"]["detail"]
        rig.client.close()


def test_a_refused_entry_is_logged_with_its_rule(rig_factory) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs, rig_factory(max_entries_per_session=1) as server:
        rig = Rig(server, Client(server.endpoint))
        rig.warm(100)
        rig.bar(100)
        rig.bar(101)
        rig.client.close()
    refusals = [e for e in logs if e["event"] == "risk_refused"]
    # model_action as the reply's risk block carries it (an integer), with its name.
    logged = [(e["rule"], e["model_action"], e["model_action_name"]) for e in refusals]
    assert logged == [("max_entries", int(Action.BUY), "BUY")]
    assert all(type(e["model_action"]) is int for e in refusals)
    states = [e["state"] for e in logs if e["event"] == "risk_state"]
    assert states == ["reducing"]  # the one entry allowed reached the cap


def test_a_halt_is_logged_between_bars_while_the_model_only_holds(rig_factory, tmp_path) -> None:
    """The halt file is read for proposed entries and between requests: a halt during
    bars that propose none still reaches the log (and monitor) without waiting for one."""
    import time as clock

    from structlog.testing import capture_logs

    state = str(tmp_path / "state")
    with capture_logs() as logs, rig_factory(logits=HOLD) as server:
        rig = Rig(server, Client(server.endpoint))
        rig.warm(100)
        assert rig.bar(100)["name"] == "HOLD"
        assert CliRunner().invoke(cli, ["halt", "--state-dir", state]).exit_code == 0
        reply = rig.bar(101)
        assert reply["name"] == "HOLD" and "risk" not in reply
        deadline = clock.monotonic() + 5
        while clock.monotonic() < deadline and not any(
            e["event"] == "kill_switch_engaged" for e in logs
        ):
            clock.sleep(0.01)
        engaged = [e for e in logs if e["event"] == "kill_switch_engaged"]
        assert engaged and engaged[0]["reason"] == "halted by the operator"
        assert CliRunner().invoke(cli, ["resume", "--state-dir", state]).exit_code == 0
        deadline = clock.monotonic() + 5  # no bar needed: the next check relogs the stream
        while clock.monotonic() < deadline and not any(
            e["event"] == "kill_switch_released" for e in logs
        ):
            clock.sleep(0.01)
        rig.client.close()
    states = [(e["state"], e["bar_time"]) for e in logs if e["event"] == "risk_state"]
    # each stream's rails are logged again with each engage and release, at its last bar
    # (the once-a-second check may see the halt before bar 101 arrives)
    halted, released = states[-2:]
    assert halted[0] == "halted" and halted[1] in (TIMES[100], TIMES[101])
    assert released == ("active", TIMES[101])


def test_each_entry_is_logged_so_the_monitor_shows_the_live_count(rig_factory) -> None:
    import json

    from rich.console import Console
    from structlog.testing import capture_logs

    from bridge.monitor import MonitorState, render

    with capture_logs() as logs, rig_factory(max_entries_per_session=3) as server:
        rig = Rig(server, Client(server.endpoint))
        rig.warm(100)
        for i in range(100, 104):  # three entries let through, the fourth refused
            rig.bar(i)
        rig.client.close()
    states = [e for e in logs if e["event"] == "risk_state"]
    counts = [(e["state"], e["rails"]["max_entries"]["entries"]) for e in states]
    assert counts == [("active", 1), ("active", 2), ("reducing", 3)]
    assert [e["log_level"] for e in states] == ["info", "info", "warning"]
    monitor = MonitorState()
    monitor.feed(json.dumps({**e, "level": e["log_level"]}) for e in logs)
    console = Console(width=200, record=True)
    console.print(render(monitor))
    assert "3 / 3" in console.export_text()


def test_the_daemon_writes_the_rails_line_after_the_reply(tiny_policy) -> None:
    """An entry changes the rails' counts and so logs a line; the daemon keeps that line
    until the reply is sent (it costs about 0.4 ms, on exactly the bars that trade)."""
    import json

    from structlog.testing import capture_logs

    dispatcher = Dispatcher(
        with_actor(tiny_policy, StubActor(BUY)),
        exchange_tz=exchange_zone("America/New_York"),
        max_message_bytes=1 << 20,
        max_sessions=8,
        risk=RiskConfig(max_entries_per_session=1),
    )
    dispatcher.defer_logs = True
    with capture_logs() as logs:
        dispatcher.handle(json.dumps(history_message(BARS, 0, WARMUP_BARS, seq=1)).encode())
        outcome = dispatcher.handle(json.dumps(bar_message(BARS, WARMUP_BARS, 2)).encode())
        assert json.loads(outcome.reply)["name"] == "BUY"
        assert not [e for e in logs if e["event"] == "risk_state"]
        dispatcher.flush_logs()
        dispatcher.flush_logs()  # written once
    states = [e for e in logs if e["event"] == "risk_state"]
    assert [(e["state"], e["rails"]["max_entries"]["entries"]) for e in states] == [("reducing", 1)]
    assert states[0]["bar_time"] == TIMES[WARMUP_BARS]


# -- stale data ------------------------------------------------------------------------


def test_stale_data_watchdog_warns_once_while_the_market_is_open(tiny_policy) -> None:
    from structlog.testing import capture_logs

    now = [0.0]
    dispatcher = Dispatcher(
        tiny_policy,
        exchange_tz=exchange_zone("America/Chicago"),
        max_message_bytes=1 << 20,
        max_sessions=8,
        clock=lambda: now[0],
    )
    import json

    dispatcher.handle(json.dumps(bar_message(BARS, 100, 1)).encode())
    tuesday_noon_utc = datetime(2025, 1, 7, 18, 0).astimezone()
    saturday_utc = datetime(2025, 1, 11, 18, 0).astimezone()
    with capture_logs() as logs:
        now[0] = 4 * 60.0
        assert dispatcher.check_stale(tuesday_noon_utc) == 0  # 4 bars: not yet
        now[0] = 6 * 60.0
        assert dispatcher.check_stale(saturday_utc) == 0  # market closed: nothing to see
        assert dispatcher.check_stale(tuesday_noon_utc) == 1
        assert dispatcher.check_stale(tuesday_noon_utc + timedelta(minutes=1)) == 1
    assert [e["event"] for e in logs] == ["stale_data"]
    assert logs[0]["log_level"] == "warning"
    dispatcher.handle(json.dumps(bar_message(BARS, 101, 2)).encode())
    assert dispatcher.check_stale(tuesday_noon_utc) == 0  # a bar came: fresh again


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_loss = 100\n", "unknown key 'max_loss'"),
        ("session_loss_limit = -5\n", "session_loss_limit must be"),
        ("max_entries_per_session = 1.5\n", "max_entries_per_session must be"),
        ('trading_window = ["8:30"]\n', "trading_window must be"),
        ("cooldown_bars = 0\n", "cooldown_bars must be"),
        ("enabled = 1\n", "enabled must be"),
        ("session_loss_limit = \n", "not valid TOML"),
    ],
)
def test_bad_risk_config_refuses_to_start(tmp_path, text, message) -> None:
    path = tmp_path / "risk.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RiskConfigError, match=message):
        RiskConfig.load(path)
    result = CliRunner().invoke(cli, ["serve", "--risk-config", str(path), "--no-journal"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message.split("'")[0].split(" must")[0] in result.output


def test_risk_config_file_sets_and_turns_off_limits(tmp_path) -> None:
    path = tmp_path / "risk.toml"
    path.write_text(
        "[risk]\nsession_loss_limit = 750\nmax_entries_per_session = false\n"
        'trading_window = ["08:30", "15:00"]\n',
        encoding="utf-8",
    )
    config = RiskConfig.load(path)
    assert config.session_loss_limit == 750.0 and config.max_entries_per_session is None
    assert config.trading_window == (time(8, 30), time(15, 0))
    assert config.cooldown_losses == RiskConfig().cooldown_losses


# -- the rails as a state machine ------------------------------------------------------


class Rails(RuleBasedStateMachine):
    """Random bars, fills, P&L reports, halts and actions; the rails' promises hold."""

    @initialize(
        loss=st.sampled_from([None, 300.0]),
        most=st.sampled_from([None, 1, 3]),
        losses=st.sampled_from([None, 1, 2]),
        bars=st.integers(1, 4),
    )
    def start(self, loss, most, losses, bars) -> None:
        self.config = RiskConfig(
            session_loss_limit=loss,
            max_entries_per_session=most,
            cooldown_losses=losses,
            cooldown_bars=bars,
            no_entry_minutes_before_close=10.0,
        )
        self.rails = RailState(self.config)
        self.session = 0
        self.clock = datetime(2025, 1, 6, 9, 0)
        self.halted = False
        self.entries_this_session = 0
        self.pnl = 0.0
        self.side = 0
        self.cooldown_until: int | None = None
        self.bar_number = 0
        self.losses_in_a_row = 0
        self.minutes_to_close: float = 300.0
        self.rails.on_bar(self.session, self.clock, self.minutes_to_close)

    @rule(new_session=st.booleans(), minutes=st.floats(0, 600))
    def bar(self, new_session: bool, minutes: float) -> None:
        if new_session:
            self.session += 1
            self.entries_this_session = 0
            self.pnl = 0.0
            self.losses_in_a_row = 0 if self.side == 0 else self.losses_in_a_row
        self.bar_number += 1
        self.clock += timedelta(minutes=1)
        self.minutes_to_close = minutes
        self.rails.on_bar(self.session, self.clock, minutes)
        if new_session:
            self.rails.on_position(self.side, self.pnl)

    @rule()
    def fill(self) -> None:
        if self.side == 0:
            self.side = 1
            self.rails.on_position(1, self.pnl)

    @rule(result=st.sampled_from([-150.0, -50.0, 0.0, 80.0]))
    def close(self, result: float) -> None:
        if self.side != 0:
            self.side = 0
            self.pnl += result
            self.rails.on_position(0, self.pnl)
            if result < 0:
                self.losses_in_a_row += 1
                n = self.config.cooldown_losses
                if n is not None and self.losses_in_a_row >= n:
                    self.cooldown_until = self.bar_number + self.config.cooldown_bars
                    self.losses_in_a_row = 0
            else:
                self.losses_in_a_row = 0

    @rule(halted=st.booleans())
    def switch(self, halted: bool) -> None:
        self.halted = halted

    @rule(action=st.sampled_from(list(Action)))
    def decide(self, action: Action) -> None:
        sent, refusal = self.rails.decide(int(action), self.halted)
        config = self.config
        if action not in (Action.BUY, Action.SELL):
            assert sent == action and refusal is None  # management is never refused
            return
        must_refuse = (
            self.halted
            or (config.session_loss_limit is not None and self.pnl <= -config.session_loss_limit)
            or (
                config.max_entries_per_session is not None
                and self.entries_this_session >= config.max_entries_per_session
            )
            or (self.cooldown_until is not None and self.bar_number < self.cooldown_until)
            or self.minutes_to_close < config.no_entry_minutes_before_close
        )
        if must_refuse:
            assert sent == Action.HOLD and refusal is not None
            if self.halted:
                assert refusal.rule == "kill_switch"
        else:
            assert sent == action and refusal is None
            self.entries_this_session += 1

    @invariant()
    def state_says_why(self) -> None:
        if not hasattr(self, "rails"):
            return
        state = self.rails.state(self.halted)
        blocking = self.rails.rails(self.halted)["blocking"]
        assert (state == "active") == (blocking is None)
        assert (state == "halted") == self.halted


TestRails = Rails.TestCase
TestRails.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_monitor_shows_each_rail_state_and_the_kill_switch() -> None:
    import json

    from rich.console import Console

    from bridge.monitor import MonitorState, render

    rails = RailState(RiskConfig(max_entries_per_session=1, session_loss_limit=None))
    rails.on_bar(1, datetime(2025, 1, 6, 9, 0), 420.0)
    rails.decide(int(Action.BUY))
    lines = [
        {
            "event": "kill_switch_engaged",
            "level": "warning",
            "reason": "news",
            "halted_at": "2025-01-06T14:55:02+00:00",
        },
        {
            "event": "risk_state",
            "level": "warning",
            "client": "c",
            "instrument": "NQ 03-26",
            "state": rails.state(),
            "bar_time": "2025-01-06T09:00:00",
            "rails": rails.rails(),
        },
        {"event": "risk_refused", "level": "info", "rule": "max_entries"},
    ]
    state = MonitorState()
    state.feed(json.dumps(line) for line in lines)
    console = Console(width=200, record=True)
    console.print(render(state))
    text = console.export_text()
    assert "kill switch ON since 2025-01-06T14:55:02+00:00 (news)" in text
    assert "max_entries 1" in text
    assert "reducing" in text and "1 / 1" in text and "420.0 min" in text
    assert "None / off" in text and "2025-01-06 09:00:00" in text  # no loss limit; as of


def test_replay_reports_the_session_pnl_and_the_refusals(rig_factory) -> None:
    from bridge.replay import ReplayConfig, run_replay

    with rig_factory(session_loss_limit=1.0, max_entries_per_session=None) as server:
        result = run_replay(
            BARS, ReplayConfig(endpoint=server.endpoint, history=WARMUP_BARS, max_bars=400)
        )
    assert result.errors == result.missed == 0
    assert any(t.pnl_dollars < 0 for t in result.trades)  # a loss: the limit of $1 is hit
    refused = result.summary()["risk_refused"]
    assert refused.get("session_loss", 0) > 0
    first = next(r for r in result.replies if "risk" in r)
    assert first["risk"]["model_action"] == Action.BUY and first["action"] == Action.HOLD
